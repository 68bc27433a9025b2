#!/usr/bin/env python3
"""A small OpenAI-style server (stdlib only) recording vLLM's metrics through
shmetrics.prometheus_client: the one-line change an engine written for prometheus_client
makes.

    PYTHONPATH=build/python python3 examples/python/openai_server.py --port 8000 --api-server-count 4
    build/exporter/shmetrics-exporter --shm.prefix vllm-py     # serves every worker, merged

POST /v1/completions and /v1/chat/completions (with `usage`; `"stream": true` streams
server-sent events, the usage chunk when `stream_options.include_usage`), GET /v1/models,
/health and /metrics (the merged view, in-process, as vLLM's API server serves it).
`--api-server-count N` pre-forks N worker processes accepting on one listening socket;
each records into its own segment. The "model" writes one word per token after a
per-token delay; it answers `finish_reason` "stop" or "length".

The families are vLLM's (names, labels, buckets as data/vllm_catalog.json has them).
`--prometheus-client real` records with the real prometheus_client instead (one process,
or PROMETHEUS_MULTIPROC_DIR), to compare.
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8000, help='0 picks a free port')
    p.add_argument('--api-server-count', type=int, default=1, help='worker processes behind the port')
    p.add_argument('--model', default='shmetrics/demo-llm', help='served model name (label model_name)')
    p.add_argument('--max-model-len', type=int, default=4096, help='bounds of the token histograms (1-2-5)')
    p.add_argument('--token-latency', type=float, default=0.002, help='seconds per generated token')
    p.add_argument('--prefill-latency', type=float, default=0.0001, help='seconds per prompt token')
    p.add_argument('--shm-prefix', default=os.environ.get('SHMETRICS_SHM_PREFIX', 'vllm-py'),
                   help='segment prefix (SHMETRICS_SHM_PREFIX); the exporter serves this prefix')
    p.add_argument('--shm-dir', default=os.environ.get('SHMETRICS_SHM_DIR'))
    p.add_argument('--prometheus-client', choices=['shmetrics', 'real'], default='shmetrics')
    return p.parse_args(argv)


def build_1_2_5_buckets(max_value):
    """vLLM's build_1_2_5_buckets(): 1, 2, 5, 10, 20, 50, ... up to max_value."""
    mantissa_lst = [1, 2, 5]
    exponent = 0
    buckets = []
    while True:
        for m in mantissa_lst:
            value = m * 10 ** exponent
            if value <= max_value:
                buckets.append(value)
            else:
                return buckets
        exponent += 1


REQUEST_LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                   120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
TIME_TO_FIRST_TOKEN = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                       7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
INTER_TOKEN_LATENCY = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                       7.5, 10.0, 20.0, 40.0, 80.0]
FINISH_REASONS = ['stop', 'length', 'abort', 'error', 'repetition']


class Metrics:
    """vLLM's frontend families (vllm/v1/metrics/loggers.py), one engine per worker."""

    def __init__(self, prometheus_client, model, engine, max_model_len):
        pc = prometheus_client
        labelnames = ['model_name', 'engine']
        labelvalues = [model, str(engine)]
        # vLLM's gauges are multiprocess_mode="mostrecent"; the catalog registers them
        # live_latest (a dead engine's running requests leave the merged view at once).
        # prometheus_client before 0.17 has no *mostrecent modes: one series per engine, so
        # livesum reads the same there.
        mode = 'livemostrecent' if 'livemostrecent' in pc.Gauge._MULTIPROC_MODES else 'livesum'
        self.running = pc.Gauge('vllm:num_requests_running', 'Number of requests in model execution batches.',
                                labelnames, multiprocess_mode=mode).labels(*labelvalues)
        self.waiting = pc.Gauge('vllm:num_requests_waiting', 'Number of requests waiting to be processed.',
                                labelnames, multiprocess_mode=mode).labels(*labelvalues)
        self.prompt_tokens = pc.Counter('vllm:prompt_tokens_total', 'Number of prefill tokens processed.',
                                        labelnames).labels(*labelvalues)
        self.generation_tokens = pc.Counter('vllm:generation_tokens_total',
                                            'Number of generation tokens processed.', labelnames).labels(*labelvalues)
        success = pc.Counter('vllm:request_success_total', 'Count of successfully processed requests.',
                             labelnames + ['finished_reason'])
        # Every reason pre-created at 0, as vLLM does.
        self.success = {r: success.labels(*labelvalues, r) for r in FINISH_REASONS}
        token_buckets = build_1_2_5_buckets(max_model_len)
        self.request_prompt_tokens = pc.Histogram('vllm:request_prompt_tokens', 'Number of prefill tokens processed.',
                                                  labelnames, buckets=token_buckets).labels(*labelvalues)
        self.request_generation_tokens = pc.Histogram(
            'vllm:request_generation_tokens', 'Number of generation tokens processed.', labelnames,
            buckets=token_buckets).labels(*labelvalues)
        self.ttft = pc.Histogram('vllm:time_to_first_token_seconds', 'Histogram of time to first token in seconds.',
                                 labelnames, buckets=TIME_TO_FIRST_TOKEN).labels(*labelvalues)
        self.itl = pc.Histogram('vllm:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.',
                                labelnames, buckets=INTER_TOKEN_LATENCY).labels(*labelvalues)
        self.e2e = pc.Histogram('vllm:e2e_request_latency_seconds', 'Histogram of e2e request latency in seconds.',
                                labelnames, buckets=REQUEST_LATENCY).labels(*labelvalues)


def compact_json(doc):
    # As vLLM writes its responses: no spaces (clients look for '"finish_reason":null').
    return json.dumps(doc, separators=(',', ':')).encode()


def count_tokens(text):
    return max(1, len(text.split()))


def output_length(prompt, max_tokens, ignore_eos):
    """A deterministic answer length: max_tokens ("length"), or shorter ("stop")."""
    if ignore_eos:
        return max_tokens, 'length'
    n = 1 + zlib.crc32(prompt.encode()) % max(1, max_tokens + max_tokens // 2)
    return (max_tokens, 'length') if n >= max_tokens else (n, 'stop')


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'shmetrics-python-example'

    def log_message(self, format, *args):
        pass

    def _send(self, code, body, content_type='application/json'):
        data = body if isinstance(body, bytes) else compact_json(body)
        self.send_response(code)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('X-Worker-Pid', str(os.getpid()))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        srv = self.server
        path = self.path.split('?')[0]
        if path == '/health':
            self._send(200, b'', 'text/plain')
        elif path == '/v1/models':
            self._send(200, {'object': 'list', 'data': [{'id': srv.args.model, 'object': 'model',
                                                          'owned_by': 'shmetrics'}]})
        elif path == '/metrics':
            pc = srv.prometheus_client
            self._send(200, pc.generate_latest(), pc.CONTENT_TYPE_LATEST)
        else:
            self._send(404, {'error': {'message': f'no route {path}', 'type': 'NotFound'}})

    def do_POST(self):
        path = self.path.split('?')[0]
        if path not in ('/v1/completions', '/v1/chat/completions'):
            self._send(404, {'error': {'message': f'no route {path}', 'type': 'NotFound'}})
            return
        try:
            length = int(self.headers.get('Content-Length') or 0)
            req = json.loads(self.rfile.read(length) or b'{}')
            chat = path == '/v1/chat/completions'
            if chat:
                prompt = ' '.join(str(m.get('content', '')) for m in req['messages'])
            else:
                prompt = req['prompt'] if isinstance(req['prompt'], str) else ' '.join(req['prompt'])
            max_tokens = int(req.get('max_tokens') or req.get('max_completion_tokens') or 16)
            if max_tokens < 1:
                raise ValueError('max_tokens must be at least 1')
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {'error': {'message': f'bad request: {e}', 'type': 'BadRequestError'}})
            return
        self.server.generate(self, chat, req, prompt, max_tokens)


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True

    def __init__(self, sock, args, prometheus_client, worker):
        HTTPServer.__init__(self, sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # the listening socket shared by every worker
        self.args = args
        self.prometheus_client = prometheus_client
        self.worker = worker
        self.metrics = Metrics(prometheus_client, args.model, worker, args.max_model_len)
        self.lock = threading.Lock()
        self.inflight = 0
        self.counter = 0

    def generate(self, handler, chat, req, prompt, max_tokens):
        m, args = self.metrics, self.args
        start = time.monotonic()
        with self.lock:
            self.inflight += 1
            self.counter += 1
            rid = f'{"chatcmpl" if chat else "cmpl"}-{os.getpid()}-{self.counter}'
            m.running.set(self.inflight)
        try:
            prompt_tokens = count_tokens(prompt)
            n_out, reason = output_length(prompt, max_tokens, bool(req.get('ignore_eos')))
            stream = bool(req.get('stream'))
            include_usage = bool((req.get('stream_options') or {}).get('include_usage'))
            usage = {'prompt_tokens': prompt_tokens, 'completion_tokens': n_out,
                     'total_tokens': prompt_tokens + n_out}
            created = int(time.time())
            obj = 'chat.completion' if chat else 'text_completion'

            def choice(text, finish):
                if chat:
                    key = 'delta' if stream else 'message'
                    return {'index': 0, key: {'role': 'assistant', 'content': text}, 'finish_reason': finish}
                return {'index': 0, 'text': text, 'finish_reason': finish}

            time.sleep(args.prefill_latency * prompt_tokens)
            words = []
            last = None
            if stream:
                handler.send_response(200)
                handler.send_header('Content-Type', 'text/event-stream')
                handler.send_header('Transfer-Encoding', 'chunked')
                handler.send_header('X-Worker-Pid', str(os.getpid()))
                handler.end_headers()

            def event(payload):
                data = b'data: ' + (payload if isinstance(payload, bytes) else compact_json(payload)) + b'\n\n'
                handler.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
                handler.wfile.flush()

            for i in range(n_out):
                time.sleep(args.token_latency)
                now = time.monotonic()
                if last is None:
                    m.ttft.observe(now - start)
                else:
                    m.itl.observe(now - last)
                last = now
                word = f' tok{i}'
                words.append(word)
                if stream:
                    event({'id': rid, 'object': obj + '.chunk' if chat else obj, 'created': created,
                           'model': args.model,
                           'choices': [choice(word, reason if i == n_out - 1 else None)]})
            # The request is finished: recorded before its last bytes go out, so that a
            # client that has its answer finds it counted.
            m.prompt_tokens.inc(prompt_tokens)
            m.generation_tokens.inc(n_out)
            m.success[reason].inc()
            m.request_prompt_tokens.observe(prompt_tokens)
            m.request_generation_tokens.observe(n_out)
            m.e2e.observe(time.monotonic() - start)
            if stream:
                if include_usage:
                    event({'id': rid, 'object': obj + '.chunk' if chat else obj, 'created': created,
                           'model': args.model, 'choices': [], 'usage': usage})
                event(b'[DONE]')
                handler.wfile.write(b'0\r\n\r\n')
                handler.wfile.flush()
            else:
                handler._send(200, {'id': rid, 'object': obj, 'created': created, 'model': args.model,
                                    'choices': [choice(''.join(words), reason)], 'usage': usage})
        finally:
            with self.lock:
                self.inflight -= 1
                m.running.set(self.inflight)


def import_prometheus_client(which):
    if which == 'real':
        import prometheus_client
        return prometheus_client
    import shmetrics.prometheus_client as prometheus_client  # the whole change
    return prometheus_client


def worker_main(sock, args, worker):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pc = import_prometheus_client(args.prometheus_client)
    server = Server(sock, args, pc, worker)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        if args.prometheus_client == 'shmetrics':
            # A clean stop removes the worker's segment (the exporter folds its counters
            # into its retired totals); a crash leaves it for the exporter to read.
            import shmetrics
            shmetrics.default_registry().close()


def main(argv=None):
    args = parse_args(argv)
    # Every worker (and anything it forks) records under one prefix.
    os.environ['SHMETRICS_SHM_PREFIX'] = args.shm_prefix
    if args.shm_dir:
        os.environ['SHMETRICS_SHM_DIR'] = args.shm_dir
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    # Non-blocking: the workers woken for one connection that another took go back to
    # their select() instead of blocking in accept().
    sock.setblocking(False)
    host, port = sock.getsockname()[:2]
    print(f'listening on http://{host}:{port} ({args.api_server_count} API server processes, '
          f'shm prefix {args.shm_prefix})', flush=True)
    if args.api_server_count <= 1:
        worker_main(sock, args, 0)
        return 0
    # Pre-forked workers accepting on the one socket (the kernel hands each connection to
    # one of them). The parent records nothing: it supervises.
    workers = []
    for k in range(args.api_server_count):
        pid = os.fork()
        if pid == 0:
            try:
                worker_main(sock, args, k)
                code = 0
            except SystemExit as e:
                code = e.code or 0
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            # A normal interpreter exit (the native module closes the worker's segment).
            sys.stdout.flush()
            raise SystemExit(code)
        workers.append(pid)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    for pid in workers:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                st = 0
                break
            except InterruptedError:
                continue
        if not stopping:
            print(f'worker {pid} exited ({st}); stopping', file=sys.stderr)
            stop()
            status = 1
    return status


if __name__ == '__main__':
    sys.exit(main())
