// personafuse route <text>: the mix the persona router picks for a text, and its whole
// distribution over the experts.
import { Command } from 'commander';
import { loadRouter, RouteResult } from '../../router/router';
import { addModelFlags, addMallocFlags, addPersonaFlags, describeMix, loadModelFromFlags, modelSetup, ModelFlags, output } from '../options';

export function routeCommand(): Command {
  return addPersonaFlags(addMallocFlags(addModelFlags(new Command('route').description('the persona mix the router picks for a text'))))
    .argument('<text>', 'the situation text (as the last user message)')
    .action(async (text: string, flags: ModelFlags) => {
      const dir = flags.router ?? modelSetup(flags).router;
      if (!dir) throw new Error('route needs a router: --router DIR (or a model folder with router/)');
      const router = await loadRouter(dir);
      let r: RouteResult;
      // a hidden-state router reads the model's own hidden states: it routes through the model
      if (router.kind === 'hidden-state') {
        const model = await loadModelFromFlags({ ...flags, router: dir });
        try {
          r = await model.route([{ role: 'user', content: text }]);
        } finally {
          await model.dispose();
        }
      } else {
        try {
          r = await router.route([{ role: 'user', content: text }]);
        } finally {
          await router.dispose();
        }
      }
      const bars = Object.entries(r.distribution)
        .map(([k, p]) => `  ${k.padEnd(24)} ${p.toFixed(3)} ${'#'.repeat(Math.round(p * 40))}`);
      output(flags, { mix: r.mix, distribution: r.distribution, topK: router.config.topK, experts: router.config.experts },
        [`mix: ${describeMix(r.mix)}`, 'distribution:', ...bars].join('\n'));
    });
}
