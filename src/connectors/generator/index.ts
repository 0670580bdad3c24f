// `generator`: synthetic events for demos, tests and benchmarks. One connector covers Timeplus's stream_generator,
// Laminar's impulse and nexmark and eKuiper's random source; the name a config uses picks the template.

import { defineConnector } from '../../core/spec.js';
import { generatorOptions } from './options.js';
import { GeneratorSource, type GeneratorConfig } from './source.js';

export { generatorOptions, type GeneratorOptionsInput } from './options.js';
export { GeneratorSource, type GeneratorConfig, type GeneratorAck } from './source.js';
export { TEMPLATES, NEXMARK_EVENT_TYPES, type Template, type NexmarkEventType } from './templates.js';
export { Prng } from './prng.js';

const ALIAS_TEMPLATES: Record<string, string> = { impulse: 'impulse', nexmark: 'nexmark', random: 'random' };

/** The template a connector alias implies (`impulse` -> 'impulse'); undefined for names that imply none. */
export function templateForAlias(name: string): string | undefined {
  return Object.hasOwn(ALIAS_TEMPLATES, name) ? ALIAS_TEMPLATES[name] : undefined;
}

export const spec = defineConnector({
  name: 'generator',
  aliases: ['stream_generator', 'impulse', 'nexmark', 'random'],
  aliasDefaults: Object.fromEntries(Object.entries(ALIAS_TEMPLATES).map(([alias, template]) => [alias, { template }])),
  title: 'Generator',
  description:
    'Generates synthetic events: IoT readings, user logins, devops metrics, a counter, Nexmark auction events, rows shaped like an example, or bare sequence numbers for benchmarks. Paced or as fast as possible, finite or endless, reproducible with a seed.',
  source: {
    options: generatorOptions,
    create: (options: GeneratorConfig) => new GeneratorSource(options),
    defaultFormat: 'json',
    replayable: false,
    metadata: {
      _offset: 'Sequence number of the event in this run, from 0.',
    },
  },
});

export default spec;
