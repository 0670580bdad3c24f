// `http_pull`: polls an HTTP endpoint (REST APIs, status pages) with auth, pagination, change detection and an
// incremental cursor kept in the checkpoint store. undici is imported when a pipeline first uses the connector.

import { defineConnector } from '../../core/spec.js';
import { lazySource } from '../../core/lazy.js';
import { pullOptions, type HttpPullOptions } from './options.js';

export { pullOptions, pullShape, type HttpPullOptions } from './options.js';

export const SOURCE_METADATA = {
  _url: 'the requested URL (page URL with pagination), without user info and with query values masked',
  _status: 'HTTP status of the response',
  _fetched_at: 'when the response arrived (milliseconds since the epoch); also the record timestamp',
  _page: 'page number within the poll, from 1',
};

export const spec = defineConnector({
  name: 'http_pull',
  aliases: ['polling_http', 'http-pull', 'httppull', 'http_poll', 'rest_poll'],
  title: 'HTTP pull',
  description:
    'Polls an HTTP endpoint on an interval: bearer, basic, API-key or OAuth2 client-credentials auth, pagination (Link header, body cursor, page numbers), only-changes mode (ETag, Last-Modified, body hash), an incremental cursor committed after the sink accepted the records and templated into the next request, retries with backoff on 5xx/429/timeouts, and a body size limit.',
  source: {
    options: pullOptions,
    create: (o: HttpPullOptions, info) => lazySource(async () => new (await import('./source.js')).HttpPullSource(o, info)),
    defaultFormat: 'json',
    replayable: true,
    metadata: SOURCE_METADATA,
  },
  test: async (options, _role, report, signal) => {
    const probe = await import('./probe.js');
    return probe.testHttpPull(probe.parseOrThrow(pullOptions(), options), report, signal);
  },
});

export default spec;
