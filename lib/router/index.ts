// The persona router and persona resolution.
export { PersonaRouter } from './router';
export type { RouteResult, RouteMessage } from './router';
export { readRouterConfig } from './router_config';
export type { RouterConfig } from './router_config';
export { BIG_FIVE, bigFiveMix, staticMix, isAuto } from './persona';
export type { BigFiveProfile, BigFiveTrait, Persona } from './persona';
