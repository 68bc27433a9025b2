"""generate_latest(), CONTENT_TYPE_LATEST and serving /metrics in-process.

generate_latest(REGISTRY) is shmetrics.generate_latest(): the merged view of every
writer under the prefix, the exporter's body (its own families with this process's
values). start_http_server(), make_wsgi_app(), make_asgi_app() and MetricsHandler serve
it as prometheus_client's do (text format 0.0.4, OpenMetrics when Accept asks for it,
gzip when allowed, `name[]`).
"""
import gzip
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import os
import re
import socket
import threading
from urllib.parse import parse_qs, urlparse

from .metrics_core import Metric
from .registry import CollectorRegistry, REGISTRY
from .utils import floatToGoString

__all__ = (
    'CONTENT_TYPE_LATEST',
    'generate_latest',
    'make_asgi_app',
    'make_wsgi_app',
    'MetricsHandler',
    'start_http_server',
    'start_wsgi_server',
    'write_to_textfile',
)

CONTENT_TYPE_LATEST = 'text/plain; version=0.0.4; charset=utf-8'
"""Content type of the latest text format"""
OPENMETRICS_CONTENT_TYPE_LATEST = 'application/openmetrics-text; version=1.0.0; charset=utf-8'


def _registry_text(registry, openmetrics=False):
    text = getattr(registry, '_text', None)
    if text is not None:
        return text(openmetrics)
    # Any object with collect() (prometheus_client's duck typing).
    return _render_metrics(list(registry.collect()), openmetrics) + (b'# EOF\n' if openmetrics else b'')


def generate_latest(registry=REGISTRY):
    """Returns the metrics from the registry in latest text format, as bytes. For REGISTRY
    (or a registry holding a MultiProcessCollector): the merged view of every process."""
    return _registry_text(registry, openmetrics=False)


def generate_latest_openmetrics(registry=REGISTRY):
    return _registry_text(registry, openmetrics=True)


def choose_encoder(accept_header):
    accept_header = accept_header or ''
    for accepted in accept_header.split(','):
        if accepted.split(';')[0].strip() == 'application/openmetrics-text':
            return generate_latest_openmetrics, OPENMETRICS_CONTENT_TYPE_LATEST
    return generate_latest, CONTENT_TYPE_LATEST


def gzip_accepted(accept_encoding_header):
    accept_encoding_header = accept_encoding_header or ''
    for accepted in accept_encoding_header.split(','):
        if accepted.split(';')[0].strip().lower() == 'gzip':
            return True
    return False


def _bake_output(registry, accept_header, accept_encoding_header, params, disable_compression):
    """Bake output for metrics output."""
    encoder, content_type = choose_encoder(accept_header)
    if 'name[]' in params:
        registry = registry.restricted_registry(params['name[]'])
    output = encoder(registry)
    headers = [('Content-Type', content_type)]
    if not disable_compression and gzip_accepted(accept_encoding_header):
        output = gzip.compress(output)
        headers.append(('Content-Encoding', 'gzip'))
    return '200 OK', headers, output


def make_wsgi_app(registry=REGISTRY, disable_compression=False):
    """Create a WSGI app which serves the metrics from a registry."""

    def prometheus_app(environ, start_response):
        accept_header = environ.get('HTTP_ACCEPT')
        accept_encoding_header = environ.get('HTTP_ACCEPT_ENCODING')
        params = parse_qs(environ.get('QUERY_STRING', ''))
        if environ['PATH_INFO'] == '/favicon.ico':
            status = '200 OK'
            headers = [('', '')]
            output = b''
        else:
            status, headers, output = _bake_output(registry, accept_header, accept_encoding_header, params,
                                                   disable_compression)
        start_response(status, headers)
        return [output]

    return prometheus_app


def make_asgi_app(registry=REGISTRY, disable_compression=False):
    """Create a ASGI app which serves the metrics from a registry."""

    async def prometheus_app(scope, receive, send):
        assert scope.get("type") == "http"
        params = parse_qs(scope.get('query_string', b'').decode('latin-1'))
        headers_in = scope.get('headers') or []
        accept_header = ",".join([
            value.decode("utf8") for (name, value) in headers_in
            if name.decode("utf8").lower() == 'accept'
        ])
        accept_encoding_header = ",".join([
            value.decode("utf8") for (name, value) in headers_in
            if name.decode("utf8").lower() == 'accept-encoding'
        ])
        status, headers, output = _bake_output(registry, accept_header, accept_encoding_header, params,
                                               disable_compression)
        formatted_headers = [tuple(x.encode('utf8') for x in header) for header in headers]
        payload = await receive()
        if payload.get("type") == "http.request":
            await send({
                "type": "http.response.start",
                "status": int(status.split(' ')[0]),
                "headers": formatted_headers,
            })
            await send({"type": "http.response.body", "body": output})

    return prometheus_app


class MetricsHandler(BaseHTTPRequestHandler):
    """HTTP handler that gives metrics from ``REGISTRY``."""
    registry = REGISTRY

    def do_GET(self):
        registry = self.registry
        accept_header = self.headers.get('Accept')
        accept_encoding_header = self.headers.get('Accept-Encoding')
        params = parse_qs(urlparse(self.path).query)
        try:
            status, headers, output = _bake_output(registry, accept_header, accept_encoding_header, params, False)
        except Exception as e:  # a collection that fails answers 500 with its reason
            output = f'collection failed: {e}\n'.encode()
            status, headers = '500 Internal Server Error', [('Content-Type', 'text/plain; charset=utf-8')]
        self.send_response(int(status.split(' ')[0]))
        for header in headers:
            self.send_header(*header)
        self.send_header('Content-Length', str(len(output)))
        self.end_headers()
        self.wfile.write(output)

    def log_message(self, format, *args):
        """Log nothing."""

    @classmethod
    def factory(cls, registry):
        """Returns a dynamic MetricsHandler class tied to the passed registry."""
        return type(str(cls.__name__), (cls, object), {"registry": registry})


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True


def _get_best_family(address, port):
    infos = socket.getaddrinfo(address, port)
    family, _, _, _, sockaddr = next(iter(infos))
    return family, sockaddr[0]


def start_http_server(port, addr='0.0.0.0', registry=REGISTRY):
    """Serves /metrics (any path) from a daemon thread on the stdlib's http.server.
    Returns (server, thread); server.server_address has the port when `port` is 0."""

    class Server(_ThreadingServer):
        pass

    Server.address_family, addr = _get_best_family(addr, port)
    httpd = Server((addr, port), MetricsHandler.factory(registry))
    t = threading.Thread(target=httpd.serve_forever, name='shmetrics-metrics-http', daemon=True)
    t.start()
    return httpd, t


start_wsgi_server = start_http_server


def write_to_textfile(path, registry):
    """Write metrics to the given path (atomically: a temporary file, then rename)."""
    tmppath = f'{path}.{os.getpid()}.{threading.current_thread().ident}'
    with open(tmppath, 'wb') as f:
        f.write(generate_latest(registry))
    os.replace(tmppath, path)


# ---- text helpers: render Metric objects, filter and parse the merged view

def _escape_help(s):
    return s.replace('\\', r'\\').replace('\n', r'\n')


def _sample_line(s, openmetrics):
    if s.labels:
        labelstr = '{{{0}}}'.format(','.join(
            ['{}="{}"'.format(k, v.replace('\\', r'\\').replace('\n', r'\n').replace('"', r'\"'))
             for k, v in sorted(s.labels.items())]))
    else:
        labelstr = ''
    timestamp = ''
    if s.timestamp is not None:
        timestamp = (f' {float(s.timestamp)}' if openmetrics
                     else f' {int(float(s.timestamp) * 1000):d}')
    return f'{s.name}{labelstr} {floatToGoString(s.value)}{timestamp}\n'


def _render_metrics(metrics, openmetrics=False):
    """Metric objects in the text format 0.0.4 (as prometheus_client) or OpenMetrics
    (without the final # EOF)."""
    output = []
    for metric in metrics:
        mname, mtype = metric.name, metric.type
        if openmetrics:
            output.append(f'# HELP {mname} {_escape_help(metric.documentation)}\n')
            output.append(f'# TYPE {mname} {mtype}\n')
            output.extend(_sample_line(s, True) for s in metric.samples)
            continue
        if mtype == 'counter':
            mname = mname + '_total'
        elif mtype == 'info':
            mname = mname + '_info'
            mtype = 'gauge'
        elif mtype == 'stateset':
            mtype = 'gauge'
        elif mtype == 'gaugehistogram':
            mtype = 'histogram'
        elif mtype == 'unknown':
            mtype = 'untyped'
        output.append(f'# HELP {mname} {_escape_help(metric.documentation)}\n')
        output.append(f'# TYPE {mname} {mtype}\n')
        om_samples = {}
        for s in metric.samples:
            for suffix in ['_created', '_gsum', '_gcount']:
                if s.name == metric.name + suffix:
                    om_samples.setdefault(suffix, []).append(_sample_line(s, False))
                    break
            else:
                output.append(_sample_line(s, False))
        for suffix, lines in sorted(om_samples.items()):
            output.append(f'# HELP {metric.name}{suffix} {_escape_help(metric.documentation)}\n')
            output.append(f'# TYPE {metric.name}{suffix} gauge\n')
            output.extend(lines)
    return ''.join(output).encode('utf-8')


def _sample_name(line):
    end = len(line)
    for ch in ('{', ' '):
        i = line.find(ch)
        if i != -1 and i < end:
            end = i
    return line[:end]


def _filter_text(body, family_names=None, sample_names=None):
    """Keeps the families (a # HELP/# TYPE block and its samples) named in family_names,
    and/or the samples named in sample_names with their block's comments."""
    out = []
    comments = []
    keep_block = False

    def end_block():
        # A kept family without samples keeps its comments (as the unfiltered body).
        if keep_block and sample_names is None:
            out.extend(comments)

    for line in body.decode('utf-8').splitlines(keepends=True):
        if line.startswith('# EOF'):
            end_block()
            comments = []
            out.append(line)
            continue
        if line.startswith('#'):
            parts = line.split(' ', 3)
            starts = len(parts) >= 3 and (parts[1] == 'HELP' or (parts[1] == 'TYPE' and not comments))
            if starts:
                end_block()
                comments = []
                keep_block = family_names is None or parts[2] in family_names
            comments.append(line)
            continue
        if not line.strip():
            continue
        if keep_block and (sample_names is None or _sample_name(line) in sample_names):
            out.extend(comments)
            comments = []
            out.append(line)
    end_block()
    return ''.join(out).encode('utf-8')


def _parse_labels(text):
    labels = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in ', ':
            i += 1
        if i >= n:
            break
        eq = text.index('=', i)
        key = text[i:eq].strip()
        i = eq + 1
        while text[i] != '"':
            i += 1
        i += 1
        value = []
        while text[i] != '"':
            if text[i] == '\\':
                i += 1
                value.append({'n': '\n', '\\': '\\', '"': '"'}.get(text[i], '\\' + text[i]))
            else:
                value.append(text[i])
            i += 1
        i += 1
        labels[key] = ''.join(value)
    return labels


def _unescape_help(s):
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), s)


def _parse_text(text):
    """The text format 0.0.4 (the merged view) as Metric objects: a counter's name without
    `_total`, as prometheus_client's families are named."""
    metrics = []
    current = None
    helps = {}
    for line in text.splitlines():
        if line.startswith('# HELP '):
            parts = line.split(' ', 3)
            helps[parts[2]] = _unescape_help(parts[3] if len(parts) > 3 else '')
            continue
        if line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ', 3)
            typ = typ.strip()
            fname = name[:-6] if typ == 'counter' and name.endswith('_total') else name
            current = Metric(fname, helps.get(name, ''), 'unknown' if typ == 'untyped' else typ)
            metrics.append(current)
            continue
        if not line or line.startswith('#'):
            continue
        brace = line.find('{')
        if brace != -1:
            close = line.rindex('}')
            name, labels = line[:brace], _parse_labels(line[brace + 1:close])
            rest = line[close + 1:].split()
        else:
            parts = line.split()
            name, labels, rest = parts[0], {}, parts[1:]
        value = float(rest[0])
        if current is None:
            current = Metric(name, '', 'unknown')
            metrics.append(current)
        current.add_sample(name, labels, value)
    return metrics
