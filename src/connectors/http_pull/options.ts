// http_pull options. Names follow eKuiper's http_pull (url, method, interval, timeout, body, headers, incremental)
// with Laminar's polling_http spellings as aliases.

import { duration, num, opt, size, z, lazyOptions } from '../../core/spec.js';
import { authSchema, headersSchema, httpUrl, insecureOption } from './http.js';

const paginationSchema = lazyOptions('http_pull:pagination', () =>
  z
    .strictObject({
      type: opt(z.enum(['none', 'link', 'cursor', 'page']).default('none'), {
        description: '`link`: follow the `Link: <...>; rel="next"` header. `cursor`: take `cursor_path` from the body and send it as the query parameter `param`. `page`: count `param` up from `start` until a page holds no records.',
        aliases: ['mode', 'style'],
      }),
      param: opt(z.string().optional(), { description: 'Query parameter that carries the cursor or the page number (default `cursor` or `page`).', aliases: ['query_param', 'parameter'] }),
      cursor_path: opt(z.string().optional(), { description: 'Dotted path of the next cursor in the response body (`meta.next_cursor`); an empty or missing value ends the pages.', aliases: ['next_cursor_path', 'cursor_field'] }),
      start: num({ default: 1, int: true, min: 0, description: 'First page number (page pagination).', aliases: ['start_page', 'first_page'] }),
      max_pages: num({ default: 1000, int: true, min: 1, description: 'Pages fetched in one poll at most, a guard against servers that never stop.', advanced: true }),
    })
    .refine((p) => p.type !== 'cursor' || !!p.cursor_path, { message: "pagination type 'cursor' needs cursor_path" })
    .prefault({} as never),
);

const retrySchema = lazyOptions('http_pull:retry', () =>
  z
    .strictObject({
      max_attempts: num({ default: 0, int: true, min: 0, description: 'Attempts per request before the source fails; 0 retries forever (each failure is logged).', aliases: ['max_retries', 'attempts'] }),
      initial_backoff: duration({ default: '500ms', description: 'First delay after a failure; doubles up to `max_backoff`, with ±20% jitter.', aliases: ['initial'] }),
      max_backoff: duration({ default: '30s', description: 'Longest delay between attempts.', aliases: ['max'] }),
    })
    .prefault({} as never),
);

const incrementalSchema = lazyOptions('http_pull:incremental', () =>
  z
    .strictObject({
      path: opt(z.string().min(1), { description: 'Dotted path, inside each record, of an increasing value (an id or a timestamp); the largest value seen becomes `{{ cursor }}`.', aliases: ['field', 'cursor_field', 'column'] }),
      initial: opt(z.union([z.string(), z.number()]).transform(String).optional(), { description: 'The value of `{{ cursor }}` before anything was committed.', aliases: ['start', 'initial_value'] }),
    })
    .optional(),
);

export const pullShape = lazyOptions('http_pull:shape', () =>
  ({
    url: httpUrl('The URL to poll, `http://` or `https://`. `{{ cursor }}` is replaced by the incremental cursor (URL-encoded).', ['endpoint', 'uri', 'server', 'http_url']),
    method: opt(z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD']).default('GET'), { description: 'HTTP method.', aliases: ['http_method', 'verb'] }),
    headers: opt(headersSchema().optional(), { description: 'Extra request headers: a map, or `"k1:v1,k2:v2"`. Values are never logged.', aliases: ['header', 'request_headers'], secret: true }),
    body: opt(z.string().optional(), { description: 'Request body (POST/PUT/PATCH); `{{ cursor }}` is replaced by the cursor.', aliases: ['request_body', 'data'] }),
    auth: opt(authSchema(), { description: 'Credentials: bearer token, basic auth, an API key header, or OAuth2 client credentials.', aliases: ['authentication'] }),
    interval: duration({ default: '10s', description: 'Time between the starts of two polls.', aliases: ['poll_interval', 'polling_interval', 'period'] }),
    timeout: duration({ default: '5s', description: 'How long one request (headers and body) may take; a timeout is retried like a 5xx.', aliases: ['request_timeout', 'timeout_ms'] }),
    max_body_size: size({ default: '16MiB', description: 'Largest accepted response body; a larger one fails the source without being buffered whole.', aliases: ['max_response_size', 'body_limit'] }),
    records_path: opt(z.string().optional(), {
      description: 'Dotted path of the records array in a JSON response (`data.items`): the body is decoded here and each element becomes a row. Unset: the whole body goes to the format (a JSON array is split into rows by the `json` format).',
      aliases: ['data_path', 'records_field', 'items_path'],
    }),
    pagination: opt(paginationSchema(), { description: 'How to fetch more pages within one poll.', aliases: ['paging'] }),
    emit: opt(z.enum(['every', 'changes']).default('every'), {
      description: '`every`: every response is emitted. `changes`: only responses that changed, using `ETag`/`If-None-Match`, `Last-Modified`/`If-Modified-Since`, and a hash of the body for servers that send neither.',
      aliases: ['emit_mode', 'change_detection'],
    }),
    incremental: opt(incrementalSchema(), { description: 'Incremental polling: a cursor taken from the records, committed with them and templated into the next request.', aliases: ['cursor', 'incremental_state'] }),
    retry: opt(retrySchema(), { description: 'Retries of 5xx answers, 429, timeouts and network errors. Other 4xx answers fail the source at once.' }),
    insecure: insecureOption(),
  }),
);

export const pullOptions = lazyOptions('http_pull:source', () =>
  z.strictObject(pullShape()).refine((o) => o.body === undefined || !['GET', 'HEAD'].includes(o.method), {
    message: 'body needs method POST, PUT, PATCH or DELETE',
    path: ['body'],
  }),
);

export type HttpPullOptions = z.output<ReturnType<typeof pullOptions>>;
