#!/usr/bin/env node
// An HTTP stage hook for net-receiver in Node.js, standard library only: the
// same policy as hook.py (see there and docs/hooks.md).
//
//   mail_from  per-sender quota: QUOTA_PER_HOUR transactions per sender an hour
//   rcpt_to    greylisting of (client IP, sender, recipient), GREYLIST_DELAY s
//   data       adds an X-Policy header and records it under "extensions"
//
// Usage: node hook.js [PORT]   (default 8025; 0 picks a free port)
'use strict';

const http = require('node:http');

const GREYLIST_DELAY = Number(process.env.GREYLIST_DELAY ?? 300) * 1000;
const QUOTA_PER_HOUR = Number(process.env.QUOTA_PER_HOUR ?? 100);
const KNOWN_FOR = 36 * 24 * 3600 * 1000;
const MAX_REQUEST = 64 << 20;

const firstSeen = new Map(); // triplet -> first attempt (ms)
const passed = new Map(); // triplet -> last pass (ms)
const sent = new Map(); // sender -> recent transactions (ms)

const senderOf = (record) => String((record && record.url) || '<>').toLowerCase();

function quota(mail, command, now) {
  const sender = senderOf(command);
  const recent = (sent.get(sender) || []).filter((t) => now - t < 3600 * 1000);
  if (recent.length >= QUOTA_PER_HOUR) {
    sent.set(sender, recent);
    return { action: 'tempfail',
      reply: { code: 450, enhanced: '4.7.1', text: `Sender quota of ${QUOTA_PER_HOUR} per hour reached` } };
  }
  recent.push(now);
  sent.set(sender, recent);
  return { action: 'continue', extensions: { quota_used: recent.length } };
}

function greylist(mail, command, now) {
  const triplet = JSON.stringify([mail.remote_ip || '', senderOf(mail.mailfrom),
    String(command.url || '').toLowerCase()]);
  if (now - (passed.get(triplet) ?? -KNOWN_FOR) < KNOWN_FOR) {
    passed.set(triplet, now);
    return { action: 'continue', extensions: { greylist: 'known' } };
  }
  const first = firstSeen.get(triplet) ?? now;
  if (!firstSeen.has(triplet)) {
    firstSeen.set(triplet, now); // a first attempt never passes
  } else if (now - first >= GREYLIST_DELAY) {
    firstSeen.delete(triplet);
    passed.set(triplet, now);
    return { action: 'continue', extensions: { greylist: 'passed' } };
  }
  const wait = Math.max(GREYLIST_DELAY - (now - first), 0) / 1000;
  return { action: 'tempfail',
    reply: { code: 451, enhanced: '4.7.1', text: `Greylisted, try again in ${wait.toFixed(0)} seconds` } };
}

function addHeader(mail) {
  const found = mail.extensions || {};
  const value = `greylist=${found.greylist ?? 'none'}; quota_used=${found.quota_used ?? 0}`;
  return { action: 'continue', add_headers: [{ name: 'X-Policy', value }], extensions: { policy: value } };
}

function answer(res, status, verdict) {
  const body = verdict ? Buffer.from(JSON.stringify(verdict)) : Buffer.alloc(0);
  const headers = { 'Content-Length': body.length };
  if (verdict) headers['Content-Type'] = 'application/json';
  res.writeHead(status, headers);
  res.end(body);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST') return answer(res, 405, null);
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_REQUEST) req.destroy(); else chunks.push(chunk);
  });
  req.on('end', () => {
    let request;
    try {
      request = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return answer(res, 400, null);
    }
    const mail = request.mail || {};
    const command = request.command || {};
    const now = Date.now();
    let verdict = null;
    if (request.stage === 'mail_from') verdict = quota(mail, command, now);
    else if (request.stage === 'rcpt_to') verdict = greylist(mail, command, now);
    else if (request.stage === 'data') verdict = addHeader(mail);
    answer(res, verdict ? 200 : 204, verdict);
  });
});
server.keepAliveTimeout = 60 * 1000; // net-receiver keeps connections for 30 s

server.listen(Number(process.argv[2] ?? 8025), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}/`);
});
