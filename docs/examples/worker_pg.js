// An external worker in Node.js with pg (npm): claims the steps of one
// queue when NOTIFY orchestrator_queue announces them (and every
// --poll-interval seconds, for retries that become due unannounced), runs up
// to --concurrency tasks at once, renews their leases while they run, and
// completes or fails each step.  SIGTERM or SIGINT: no more claims, the
// running tasks finish and are reported, then it exits 0.
//
//   node worker_pg.js postgresql://worker@127.0.0.1/app greeter [--concurrency 4]
//
// The task is work() below.  Without a worker of your own, the
// orchestrator-worker command does all this for a handler in any language
// (docs/workers.md).
'use strict';

const os = require('os');
const { Client } = require('pg');

// The task: here, greet someone.  A thrown error fails the step.
async function work(payload) {
  if (payload.sleep) await new Promise((resolve) => setTimeout(resolve, payload.sleep * 1000));
  if (payload.fail) throw new Error(`cannot greet: ${payload.fail}`);
  return { greeting: `Hello, ${payload.name || 'world'}!`, by: 'node' };
}

function parseArgs(argv) {
  const opts = { concurrency: 4, lease: 60, pollInterval: 5, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--concurrency') opts.concurrency = Number(argv[++i]);
    else if (a === '--lease') opts.lease = Number(argv[++i]);
    else if (a === '--poll-interval') opts.pollInterval = Number(argv[++i]);
    else opts.positional.push(a);
  }
  if (opts.positional.length !== 2 || !(opts.concurrency >= 1) || !(opts.lease >= 1) || !(opts.pollInterval > 0)) {
    console.error('usage: node worker_pg.js URI QUEUE [--concurrency N] [--lease SECONDS] [--poll-interval SECONDS]');
    process.exit(1);
  }
  [opts.uri, opts.queue] = opts.positional;
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const me = `${os.hostname()}:${process.pid}`;
  const client = new Client({ connectionString: opts.uri, application_name: 'worker_pg' });
  const running = new Set();
  let wantClaim = true;
  let claiming = false;
  let stopping = false;
  let finished = false;
  let poll = null;

  // A lost connection ends this example (exit 1); the steps it held are
  // retried after their leases expire.  A long-lived worker connects again.
  client.on('error', (e) => {
    console.error(`worker_pg: ${e.message}`);
    process.exit(1);
  });

  async function maybeFinish() {
    if (!stopping || running.size > 0 || claiming || finished) return;
    finished = true;
    await client.end();
    console.log('worker_pg: stopped');
  }

  function start(row) {
    const beat = setInterval(() => {
      client.query('SELECT orchestrator.heartbeat_step($1, $2, $3) AS alive', [row.run_id, row.step, row.lease_token])
        .then((r) => { if (!r.rows[0].alive) console.error(`worker_pg: lease of ${row.run_id}/${row.step} was lost`); })
        .catch((e) => console.error(`worker_pg: heartbeat: ${e.message}`));
    }, (opts.lease * 1000) / 3);
    const task = (async () => {
      let result;
      let error;
      try {
        result = await work(row.input || {});
      } catch (e) {
        error = e;
      }
      clearInterval(beat);
      const r = error === undefined
        ? await client.query('SELECT orchestrator.complete_step($1, $2, $3, $4) AS ok',
          [row.run_id, row.step, row.lease_token, JSON.stringify(result === undefined ? null : result)])
        : await client.query('SELECT orchestrator.fail_step($1, $2, $3, $4, true) AS ok',
          [row.run_id, row.step, row.lease_token,
            JSON.stringify({ message: error.message, type: error.name, worker: me })]);
      if (!r.rows[0].ok) console.error(`worker_pg: lease of ${row.run_id}/${row.step} was lost`);
    })()
      .catch((e) => console.error(`worker_pg: ${e.message}`))
      .finally(() => {
        running.delete(task);
        wantClaim = true;
        claim();
      });
    running.add(task);
  }

  // One claim at a time, as many steps as there is room for.
  async function claim() {
    if (claiming) return;
    claiming = true;
    try {
      while (!stopping && wantClaim && running.size < opts.concurrency) {
        wantClaim = false;
        const free = opts.concurrency - running.size;
        const { rows } = await client.query(
          "SELECT run_id, step, lease_token, input FROM orchestrator.claim_steps($1, $2, $3, $4 * interval '1 second')",
          [opts.queue, me, free, opts.lease]);
        rows.forEach(start);  // claimed: worked even if a stop came meanwhile
        if (rows.length === free) wantClaim = true;
      }
    } catch (e) {
      console.error(`worker_pg: claim: ${e.message}`);
    } finally {
      claiming = false;
      maybeFinish();
    }
  }

  function stop() {
    if (stopping) return;
    stopping = true;
    console.log('worker_pg: stopping');
    clearInterval(poll);
    maybeFinish();
  }

  await client.connect();
  client.on('notification', (n) => {
    if (n.channel === 'orchestrator_queue' && n.payload === opts.queue) {
      wantClaim = true;
      claim();
    }
  });
  await client.query('LISTEN orchestrator_queue');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  poll = setInterval(() => { wantClaim = true; claim(); }, opts.pollInterval * 1000);
  await claim();
  console.log(`worker_pg: listening on queue ${opts.queue} as ${me}`);
}

main().catch((e) => {
  console.error(`worker_pg: ${e.message}`);
  process.exit(1);
});
