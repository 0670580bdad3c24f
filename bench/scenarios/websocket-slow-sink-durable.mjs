// websocket->slow-sink with `buffer: durable` on the source: the backlog should land in the on-disk log, not in RSS.
// The bare baseline is the same paused-socket client as in websocket->slow-sink (it has no disk log); it is there as
// the memory reference, not as a rival.

import { slowSinkScenario } from './websocket-slow-sink.mjs';

export default slowSinkScenario({ name: 'websocket->slow-sink+durable', durable: true });
