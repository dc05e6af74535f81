// The status page: reads /status/stream (one JSON sample per second; the opening holds the last minutes) and
// shows the latest figures and charts of the samples it holds. Everything comes from the server it was loaded
// from: the stream's URL is relative to the page, and the page's own `key` query value, if any, is passed on.
'use strict';

const KEEP = 300; // samples charted: five minutes, as many as the server keeps
const samples = [];
let received = 0; // samples taken since the page opened (its opening's included)
const $ = (id) => document.getElementById(id);
const number = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const bytes = (n) => {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
};

function rows(id, entries) {
  const body = $(id).tBodies[0];
  body.replaceChildren(...entries.map((cells) => {
    const tr = document.createElement('tr');
    for (const cell of cells) {
      const td = document.createElement('td');
      td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }));
}

function chart(id, series) {
  const el = $(id);
  const opts = {
    width: Math.max(380, el.clientWidth || 420),
    height: 200,
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2 }))],
    axes: [{}, { size: 70 }],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], el);
}

let charts = null;

function redraw() {
  if (!charts) {
    charts = {
      rates: chart('chart-rates', [['published / s', '#2a6fdb'], ['deliveries / s', '#1c9a5a']]),
      conns: chart('chart-conns', [['connections', '#7a4cc2'], ['subscribers', '#d9822b']]),
      queued: chart('chart-queued', [['queued bytes', '#c23c3c']]),
    };
  }
  const t = samples.map((s) => s.time / 1000);
  charts.rates.setData([t, samples.map((s) => s.rates.published), samples.map((s) => s.rates.delivered)]);
  charts.conns.setData([t, samples.map((s) => s.connections), samples.map((s) => s.subscribers)]);
  charts.queued.setData([t, samples.map((s) => s.queued_bytes)]);
}

function show(s) {
  $('connections').textContent = number(s.connections);
  $('subscribers').textContent = number(s.subscribers);
  $('published-rate').textContent = number(s.rates.published);
  $('delivered-rate').textContent = number(s.rates.delivered);
  $('published').textContent = number(s.published);
  $('delivered').textContent = number(s.delivered);
  $('queued-bytes').textContent = bytes(s.queued_bytes);
  $('slow-closes').textContent = number(s.slow_closes);
  $('channels').textContent = number(s.channels);
  $('history').textContent = number(s.history.events) + ' events, ' + bytes(s.history.bytes);
  const broker = s.broker.kind === 'local' ? 'local' : 'Redis ' + (s.broker.reachable ? 'reachable' : 'unreachable');
  $('broker').textContent = broker;
  $('broker').className = 'value' + (s.broker.reachable ? '' : ' down');
  $('updated').textContent = 'at ' + new Date(s.time).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' +
    (s.draining ? ' (draining)' : '');
  rows('workers', s.workers.map((w, i) => [i, number(w.connections), number(w.subscribers), bytes(w.queued_bytes)]));
  rows('apis', Object.entries(s.apis).map(([api, n]) => [api, number((s.connections_by_api || {})[api] || 0), number(n)]));
  rows('errors', Object.entries(s.errors).map(([code, n]) => [code, number(n)]));
  document.body.dataset.samples = String(received);
}

function connect() {
  const key = new URLSearchParams(location.search).get('key');
  const source = new EventSource('/status/stream' + (key ? '?key=' + encodeURIComponent(key) : ''));
  source.onopen = () => { $('state').textContent = 'live'; $('state').className = 'state live'; };
  source.onerror = () => { $('state').textContent = 'reconnecting…'; $('state').className = 'state down'; };
  source.onmessage = (e) => {
    const s = JSON.parse(e.data);
    // A reconnect's opening repeats the recent samples this page already holds.
    if (samples.length && s.time <= samples[samples.length - 1].time) return;
    samples.push(s);
    received += 1;
    if (samples.length > KEEP) samples.shift();
    show(s);
    redraw();
  };
}

connect();
