// mm-server driven by the official OpenAI client (tests/server/run.sh starts the servers).
//   node test.mjs main   URL KEY PID MODELS_DIR   answers, streaming, embeddings, load, hostile
//                                                 requests, then SIGTERM during a stream
//   node test.mjs cancel URL PID                  a client leaving mid-stream frees its slot;
//                                                 a full queue gives 503 with Retry-After;
//                                                 SIGTERM during a long stream
// Right answers are the scene generator's own (MODELS_DIR/images/questions.tsv), never the
// server's earlier output. Prints one line per check; exits 1 on the first failure.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import OpenAI from 'openai';

const [mode, url, ...rest] = process.argv.slice(2);
const [key, pid, models] = mode === 'cancel' ? [null, rest[0], null] : rest;
const started = Date.now();
function check(ok, what) {
    if (!ok) {
        console.log(`FAIL: ${what}`);
        process.exit(1);
    }
    console.log(`ok   ${what}`);
}

// A raw HTTP exchange over one socket: returns {status, headers, body} or {closed: true}.
function raw(text, { waitMs = 10000 } = {}) {
    const { hostname, port } = new URL(url);
    return new Promise((resolve) => {
        const socket = net.connect(Number(port), hostname);
        let got = '';
        const timer = setTimeout(() => { socket.destroy(); resolve({ timedOut: true, got }); }, waitMs);
        socket.on('data', (d) => { got += d.toString('latin1'); });
        socket.on('close', () => {
            clearTimeout(timer);
            const m = /^HTTP\/1\.[01] (\d+)/.exec(got);
            resolve(m ? { status: Number(m[1]), headers: got.split('\r\n\r\n')[0],
                          body: got.slice(got.indexOf('\r\n\r\n') + 4) }
                      : { closed: true, got });
        });
        socket.on('error', () => {});
        socket.write(text);
    });
}

function post(path, body, { type = 'application/json', auth = key } = {}) {
    const headers = { 'Content-Type': type };
    if (auth) headers.Authorization = `Bearer ${auth}`;
    return fetch(url + path, { method: 'POST', headers, body });
}

function percentile(sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))];
}

async function main() {
    // No retries, so a lost request shows; no kept-alive connections, since the server closes
    // idle ones after its --timeout (2 s here) and a reused one could be closed under a request.
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: key, maxRetries: 0, timeout: 60000,
                                httpAgent: new http.Agent({ keepAlive: false }) });
    const tsv = fs.readFileSync(`${models}/images/questions.tsv`, 'utf8').trim().split('\n');
    const questions = tsv.map((line) => {
        const [image, question, answer] = line.split('\t');
        const png = fs.readFileSync(`${models}/images/${image}`).toString('base64');
        return { image, question, answer, dataUrl: `data:image/png;base64,${png}` };
    });
    const ask = (q, extra = {}) => client.chat.completions.create({
        model: 'scenes', ...extra,
        messages: [{ role: 'user', content: [
            { type: 'image_url', image_url: { url: q.dataUrl } },
            { type: 'text', text: q.question }] }],
    });

    const models_list = await client.models.list();
    check(models_list.data.map((m) => m.id).join(',') === 'scenes-llava.gguf,scenes-clip.gguf',
          '/v1/models lists the language model and the CLIP file');

    // Every question of the bundled set, non-streamed.
    let right = 0;
    for (const q of questions) {
        const r = await ask(q);
        const text = r.choices[0].message.content;
        if (text === q.answer && r.choices[0].finish_reason === 'stop' &&
            r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0 &&
            r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens)
            right++;
        else
            console.log(`     ${q.image} "${q.question}": got "${text}", expected "${q.answer}"`);
    }
    check(right === questions.length, `chat with an image: ${right} of ${questions.length} ` +
          'answers are the generator\'s, with finish_reason and usage');

    // Streamed: the deltas join into the right answer; the last chunk says why it ended.
    let streams = 0;
    for (const q of questions.filter((_, i) => i % 6 === 0)) {
        const stream = await ask(q, { stream: true });
        let text = '', finish = null, chunks = 0;
        for await (const chunk of stream) {
            if (chunk.object === 'chat.completion.chunk') chunks++;
            text += chunk.choices[0]?.delta?.content ?? '';
            finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        if (text === q.answer && finish === 'stop' && chunks > 2) streams++;
        else console.log(`     stream: got "${text}" (${finish}), expected "${q.answer}"`);
    }
    check(streams === 6, `streamed chat: ${streams} of 6 streams give the right answer`);

    // Anthropic's shape, on /v1/messages.
    const q0 = questions[1];
    const anthropic = await (await post('/v1/messages', JSON.stringify({
        model: 'scenes', max_tokens: 64, messages: [{ role: 'user', content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png',
                                       data: q0.dataUrl.split(',')[1] } },
            { type: 'text', text: q0.question }] }] }))).json();
    check(anthropic.type === 'message' && anthropic.content[0].text === q0.answer &&
          anthropic.stop_reason === 'end_turn' && anthropic.usage.output_tokens > 0,
          `/v1/messages: "${anthropic.content?.[0]?.text}" with stop_reason end_turn`);

    const events = await (await post('/v1/messages', JSON.stringify({
        model: 'scenes', max_tokens: 64, stream: true, messages: [{ role: 'user', content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png',
                                       data: q0.dataUrl.split(',')[1] } },
            { type: 'text', text: q0.question }] }] }))).text();
    const data = events.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)));
    const streamed = data.filter((e) => e.type === 'content_block_delta').map((e) => e.delta.text).join('');
    check(streamed === q0.answer && data[0].type === 'message_start' &&
          data.at(-1).type === 'message_stop' &&
          data.find((e) => e.type === 'message_delta')?.delta.stop_reason === 'end_turn',
          '/v1/messages streamed: Anthropic\'s events, the right answer');

    // Sampling settings reach the model: max_tokens cuts the answer, "stop" ends it early.
    const cut = await ask(questions[0], { max_tokens: 3 });
    check(cut.choices[0].finish_reason === 'length' && cut.usage.completion_tokens === 3 &&
          questions[0].answer.startsWith(cut.choices[0].message.content),
          `max_tokens 3: "${cut.choices[0].message.content}", finish_reason length`);
    const stopped = await ask(questions[0], { stop: [' triangle'] });
    check(stopped.choices[0].message.content === 'a small orange' &&
          stopped.choices[0].finish_reason === 'stop', 'stop string ends the answer before it');

    // CLIP embeddings: each image is nearest to its own caption (the generator's), among the six.
    const captions = questions.filter((q) => /^(Describe|What is in)/.test(q.question));
    const images = await client.embeddings.create({ model: 'clip', input: captions.map((q) => q.dataUrl) });
    const texts = await client.embeddings.create({ model: 'clip', input: captions.map((q) => q.answer) });
    const dot = (a, b) => a.reduce((s, v, i) => s + v * b[i], 0);
    let nearest = 0;
    images.data.forEach((img, i) => {
        const sims = texts.data.map((t) => dot(img.embedding, t.embedding));
        if (sims.indexOf(Math.max(...sims)) === i) nearest++;
    });
    check(images.data.length === 6 && texts.data[0].embedding.length > 0 &&
          Math.abs(dot(texts.data[0].embedding, texts.data[0].embedding) - 1) < 1e-4,
          `embeddings: 6 images, unit-length vectors of ${texts.data[0].embedding.length}`);
    check(nearest === 6, `embeddings: ${nearest} of 6 images nearest to their own caption`);
    const asFloats = await (await post('/v1/embeddings', JSON.stringify({
        input: captions[0].answer, encoding_format: 'float' }))).json();
    check(asFloats.data[0].embedding.every((v, i) => v === texts.data[0].embedding[i]),
          'embeddings: "float" and "base64" encodings give the same numbers');

    // The API key.
    const noKey = await post('/v1/chat/completions', '{}', { auth: null });
    const wrongKey = await post('/v1/chat/completions', '{}', { auth: 'not-the-key' });
    check(noKey.status === 401 && wrongKey.status === 401 &&
          (await noKey.json()).error.type === 'authentication_error', 'no key or a wrong key: 401');

    // Load: 8 clients x 25 requests at once, every answer checked.
    const latencies = [];
    let lost = 0, wrong = 0;
    const loadStart = Date.now();
    await Promise.all([...Array(8).keys()].map(async (c) => {
        for (let i = 0; i < 25; i++) {
            const q = questions[(c * 25 + i * 7) % questions.length];
            const t0 = performance.now();
            try {
                const r = await ask(q);
                if (r.choices[0].message.content !== q.answer) wrong++;
            } catch (e) {
                lost++;
                console.log(`     load: ${e.status ?? ''} ${e.message}`);
            }
            latencies.push(performance.now() - t0);
        }
    }));
    const seconds = (Date.now() - loadStart) / 1000;
    latencies.sort((a, b) => a - b);
    console.log(`     load: ${latencies.length} requests in ${seconds.toFixed(2)} s ` +
                `(${(latencies.length / seconds).toFixed(1)}/s), p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
                `p99 ${percentile(latencies, 99).toFixed(1)} ms`);
    check(latencies.length === 200 && lost === 0 && wrong === 0,
          `load: 200 of 200 requests answered, ${wrong} wrong, ${lost} lost`);

    // Hostile requests: each gets its error, and the server keeps serving.
    const bad = await post('/v1/chat/completions', '{"messages": [');
    const badBody = await bad.json();
    check(bad.status === 400 && /JSON/.test(badBody.error.message), `bad JSON: 400 "${badBody.error.message}"`);
    const shape = await post('/v1/chat/completions', '{"messages": "hello"}');
    check(shape.status === 400, `a request of the wrong shape: 400 "${(await shape.json()).error.message}"`);
    const huge = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: [
        { type: 'image_url', image_url: { url: 'data:image/png;base64,' + 'A'.repeat(3 << 20) } }] }] }));
    check(huge.status === 413 && (await huge.json()).error.message.includes('limit'),
          'base64 over the body limit: 413');
    // A PNG header claiming 100000 x 100000 pixels: refused before any pixel memory.
    const crc32 = (bytes) => { // zlib.crc32 is only in node >= 20.15; Debian 12 has 18
        let c = ~0;
        for (const b of bytes) {
            c ^= b;
            for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
        }
        return ~c >>> 0;
    };
    const chunk = (type, data) => {
        const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
        const head = Buffer.alloc(4), crc = Buffer.alloc(4);
        head.writeUInt32BE(data.length);
        crc.writeUInt32BE(crc32(body));
        return Buffer.concat([head, body, crc]);
    };
    const png = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'),
        chunk('IHDR', Buffer.from('000186a0000186a00806000000', 'hex')),
        chunk('IDAT', zlib.deflateSync(Buffer.alloc(64))), chunk('IEND', Buffer.alloc(0))]);
    const bigImage = await post('/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: [
        { type: 'image_url', image_url: { url: 'data:image/png;base64,' + png.toString('base64') } },
        { type: 'text', text: 'hi' }] }] }));
    const bigImageBody = await bigImage.json();
    check(bigImage.status === 400 && /limit|large|exceeds/i.test(bigImageBody.error.message),
          `an image over the size limits: 400 "${bigImageBody.error.message}"`);
    const badB64 = await post('/v1/embeddings', JSON.stringify({ input: ['data:image/png;base64,@@@@'] }));
    check(badB64.status === 400, `malformed base64: 400 "${(await badB64.json()).error.message}"`);
    const wrongType = await post('/v1/chat/completions', '{}', { type: 'text/plain' });
    check(wrongType.status === 415, 'wrong content type: 415');
    const unknown = await fetch(`${url}/v1/nothing`, { headers: { Authorization: `Bearer ${key}` } });
    check(unknown.status === 404 && (await unknown.json()).error, 'unknown route: 404 with an error object');
    const tooMany = await ask(questions[0], { max_tokens: 100000 }).catch((e) => e);
    check(tooMany.status === 400, `max_tokens over the cap: 400 "${tooMany.error?.message}"`);

    // Slow-loris: a request whose body never comes, and one whose headers never end. Both are
    // closed after the timeout (2 s), and the server answers others meanwhile.
    const slowBody = raw(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
                         'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"mess', { waitMs: 8000 });
    const slowHead = raw('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ', { waitMs: 8000 });
    const meanwhile = await ask(questions[2]);
    check(meanwhile.choices[0].message.content === questions[2].answer, 'answers while two slow clients hang on');
    const [sb, sh] = await Promise.all([slowBody, slowHead]);
    check(!sb.timedOut && !sh.timedOut, 'slow-loris connections are closed by the server within the timeout');

    const after = await ask(questions[3]);
    const health = await (await fetch(`${url}/health`)).json();
    check(after.choices[0].message.content === questions[3].answer && health.status === 'ok',
          'after the hostile requests: right answers, /health ok');

}

async function cancel() {
    // The server runs a random-weight model with one slot and a queue of one, so a long
    // generation keeps the slot busy until its client leaves.
    const body = (n, stream) => JSON.stringify({ stream, max_tokens: n, messages: [{ role: 'user', content: 'go on' }] });
    const controller = new AbortController();
    const t0 = performance.now();
    const long = await fetch(`${url}/v1/chat/completions`, { method: 'POST', signal: controller.signal,
        headers: { 'Content-Type': 'application/json' }, body: body(100000, true) });
    const reader = long.body.getReader();
    await reader.read(); // the first event: generation is under way
    // Slot busy: one request waits in the queue, the next is refused.
    const queued = fetch(`${url}/v1/chat/completions`, { method: 'POST',
        headers: { 'Content-Type': 'application/json' }, body: body(4, false) });
    await new Promise((r) => setTimeout(r, 300));
    const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST',
        headers: { 'Content-Type': 'application/json' }, body: body(4, false) });
    check(refused.status === 503 && refused.headers.get('retry-after') === '1' &&
          (await refused.json()).error.type === 'overloaded_error',
          'queue full: 503 with Retry-After');
    controller.abort(); // leave mid-stream
    const next = await queued;
    const waited = performance.now() - t0;
    const answer = await next.json();
    check(next.status === 200 && answer.usage.completion_tokens === 4,
          `the queued request ran once the client left (after ${waited.toFixed(0)} ms)`);
    // The long generation (100000 tokens) would have taken far longer than this.
    check(waited < 20000, 'the abandoned generation was cancelled, not run to its end');

    // SIGTERM while a long stream is being read: no new connection is taken, yet the stream
    // runs to its end (max_tokens) and [DONE]; run.sh then checks the server's exit status.
    const streamReq = JSON.stringify({ stream: true, max_tokens: 1500, messages: [{ role: 'user', content: 'go on' }] });
    const { hostname, port } = new URL(url);
    let probe = null;
    const finished = await new Promise((resolve) => {
        const socket = net.connect(Number(port), hostname);
        let got = '', signalled = false;
        socket.on('data', (d) => {
            got += d;
            if (signalled) return;
            signalled = true;
            process.kill(Number(pid), 'SIGTERM');
            probe = new Promise((r) => setTimeout(r, 100)).then(() => fetch(`${url}/health`))
                .then((res) => `answered ${res.status}`, () => 'refused');
        });
        socket.on('close', () => resolve(got));
        socket.on('error', () => resolve(got));
        socket.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
                     `Content-Type: application/json\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(streamReq)}\r\n\r\n${streamReq}`);
    });
    const deltas = finished.split('"delta":{"content":').length - 1;
    check(finished.includes('data: [DONE]') && finished.includes('"finish_reason":"length"') &&
          finished.includes('"completion_tokens":1500'),
          `SIGTERM during a stream: it still runs to max_tokens (${deltas} pieces) and [DONE]`);
    const probed = await probe;
    // (refused on a new connection; 503 on one the client kept alive)
    check(probed === 'refused' || probed === 'answered 503', `SIGTERM: a new request meanwhile is ${probed}`);
}

(mode === 'cancel' ? cancel() : main()).then(() => {
    console.log(`server ${mode} checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}, (e) => { console.log(`FAIL: ${e.stack || e}`); process.exit(1); });
