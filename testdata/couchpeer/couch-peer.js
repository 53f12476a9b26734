'use strict';
// couch-peer: the CouchDB-API test peer the cmbs tests start (Apache CouchDB is
// not packaged for the project's machines). express-pouchdb over in-memory
// PouchDB, admin party, with four fixes (Fix 1–4 below: ETag, buffered
// _changes, selector filters, longpoll timeout) that make Go CouchDB clients
// (kivik) behave as against CouchDB.
//
//   COUCH_PEER_PORT=0 node couch-peer.js   → prints "listening http://127.0.0.1:<port>/"
const http = require('http');
const os = require('os');
const express = require('express');
const expressPouchDB = require('express-pouchdb');
const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-adapter-memory'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-replication'));

const couch = expressPouchDB({
  mode: 'fullCouchDB',
  inMemoryConfig: true, // no config.json in the working directory
  logPath: os.devNull, // no log.txt either
  // Fix 2: compression buffers continuous _changes feeds; http-log is only cost.
  overrideMode: { exclude: ['compression', 'routes/http-log'] },
});

// Fix 1: Express's weak body-hash ETag is wrong for CouchDB clients, which read
// the document revision from ETag (kivik's GetRev and Delete do).
couch.set('etag', false);
couch.disable('x-powered-by');
function isDocPath(path) {
  const seg = path.split('/'); // ['', db, id] or ['', db, '_design'|'_local', name]
  if (seg.length === 3) return seg[2] !== '' && !seg[2].startsWith('_');
  return seg.length === 4 && (seg[2] === '_design' || seg[2] === '_local');
}
function revisionETag(req, res, next) {
  if (!isDocPath(req.path)) return next();
  const send = res.send;
  res.send = function (body) {
    if (res.statusCode < 300 && !res.get('ETag') && Buffer.isBuffer(body)) {
      try {
        const v = JSON.parse(body);
        const rev = v && (v._rev || v.rev);
        if (typeof rev === 'string') res.set('ETag', '"' + rev + '"');
      } catch (e) { /* not a JSON document (attachment, multipart): no ETag */ }
    }
    return send.apply(this, arguments);
  };
  next();
}

// Fix 3: POST /db/_changes?filter=_selector {"selector":…} must reach PouchDB as
// its selector option; unmapped, express-pouchdb looks up a design document
// "_selector" and the process dies on the unhandled error.
const jsonBody = express.json({ limit: '64mb' });
function selectorChanges(req, res, next) {
  if (req.query.filter !== '_selector' || !/^\/[^/]+\/_changes$/.test(req.path)) return next();
  const bad = (reason) => res.status(400).json({ error: 'bad_request', reason });
  if (req.method !== 'POST') return bad('filter=_selector needs a POST body with a selector');
  jsonBody(req, res, (err) => {
    if (err) return next(err);
    const sel = req.body && req.body.selector;
    if (!sel || typeof sel !== 'object' || Array.isArray(sel)) return bad('Selector must be specified in POST payload');
    req.query.selector = sel;
    next();
  });
}

// Fix 4: CouchDB ends a longpoll feed after ?timeout= ms with no change; PouchDB's
// live feed has no timeout, so the request (and the client) would hang. The
// query object express-pouchdb hands to db.changes is req.query itself, so it
// keys the state a timer needs: the live feed to cancel and the seq reached.
const longpolls = new WeakMap();
couch.dbWrapper.registerWrapper((name, db, next) => {
  const changes = db.changes;
  db.changes = function (opts) {
    const feed = changes.apply(this, arguments);
    const lp = opts && longpolls.get(opts);
    // The live feed express-pouchdb starts next reuses opts: pin its since
    // to where this check ended, or a write in between (or since=now read
    // twice) would be missed.
    if (lp && !opts.live) feed.then((r) => { lp.lastSeq = opts.since = r.last_seq; }, () => {});
    if (lp && opts.live) { lp.feed = feed; if (lp.expired) setImmediate(lp.finish); }
    return feed;
  };
  return next();
});
function longpollTimeout(req, res, next) {
  const ms = Number(req.query.timeout);
  if (req.query.feed !== 'longpoll' || !(ms >= 0) || !/^\/[^/]+\/_changes$/.test(req.path)) return next();
  const lp = { expired: false, feed: null, lastSeq: 0 };
  lp.finish = () => {
    if (!lp.feed || res.writableEnded) return;
    lp.feed.cancel();
    res.end('],\n"last_seq":' + JSON.stringify(lp.lastSeq) + '}\n');
  };
  longpolls.set(req.query, lp);
  const timer = setTimeout(() => { lp.expired = true; lp.finish(); }, ms);
  res.on('close', () => clearTimeout(timer));
  next();
}

const app = express();
app.set('etag', false);
app.disable('x-powered-by');
app.use(selectorChanges, longpollTimeout, revisionETag, couch);

async function main() {
  await couch.setPouchDB(PouchDB.defaults({ adapter: 'memory' }));
  const server = http.createServer(app);
  const port = Number(process.env.COUCH_PEER_PORT || 0);
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`listening http://127.0.0.1:${server.address().port}/\n`);
  });
  const stop = () => {
    // Open longpoll/continuous feeds would hold close() forever: drop them.
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error('couch-peer:', err);
  process.exit(1);
});
