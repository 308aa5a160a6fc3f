// The persona router and persona resolution.
export { loadRouter, PersonaRouter } from './router';
export type { AnyRouter, RouteResult, RouteMessage } from './router';
export { HiddenStateRouter } from './hidden_router';
export { readRouterConfig } from './router_config';
export type { RouterConfig, EncoderRouterConfig, HiddenRouterConfig } from './router_config';
export { BIG_FIVE, bigFiveMix, staticMix, isAuto } from './persona';
export type { BigFiveProfile, BigFiveTrait, Persona } from './persona';
