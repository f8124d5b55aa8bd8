"""Synthetic corpus sources, generated from fixed seeds with the standard library's ``random``.

- ``logs``: application and server log lines in several formats (syslog, JSON logs, logfmt, nginx access
  and error logs, Spring-style and Python logging lines, Python and Java tracebacks); one message is 1-8
  consecutive lines of one host or service.
- ``records``: JSON records (users, orders, events, sensor readings, config objects, API pages), compact,
  pretty-printed or as JSON lines.
- ``chat``: chat-like short messages (a few turns, some with names and times) and answer-like Markdown
  paragraphs with lists, code spans and short code blocks.

The word lists are written here by hand: no network, no data from an installed package (faker's would
come from site-packages, which DESIGN.md §5 holds out, and would change with its version). Each
generator is an endless iterator; the same seed gives the same messages, every one within
``MIN_BYTES..MAX_BYTES`` UTF-8 bytes.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from models.corpus_text import MAX_BYTES, MIN_BYTES, nbytes, rng_for

SEED = 0   # the corpus uses this seed; the generators take others for tests


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST = _words("james mary robert patricia john jennifer michael linda david elizabeth william barbara "
               "richard susan joseph jessica thomas sarah charles karen chris lisa daniel nancy matthew "
               "betty anthony sandra mark ashley paul emily steven donna andrew michelle joshua carol kevin "
               "amanda brian melissa george deborah tim rebecca jason laura ryan sharon jacob cynthia gary "
               "kathleen nicholas amy eric anna jonathan angela stephen ruth larry helen justin olga raj "
               "priya wei li yuki hiro fatima omar ahmed aisha carlos maria jose lucia pierre camille hans "
               "greta sven ingrid nikolai anya kofi amara tariq mei chen diego sofia luca giulia mateo "
               "valentina noah emma liam olivia ava mia leo zoe")
LAST = _words("smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez "
              "gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris "
              "sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill "
              "flores green adams nelson baker hall rivera campbell mitchell carter roberts kim park chen "
              "wang zhang liu singh patel kumar sharma khan ali hassan mueller schmidt schneider fischer "
              "weber rossi russo ferrari bianchi dubois moreau laurent petrov ivanov novak kowalski nielsen "
              "hansen larsen jensen okafor mensah tanaka suzuki sato yamamoto silva santos oliveira costa "
              "pereira")
CITIES = (("Portland", "US", "OR"), ("Austin", "US", "TX"), ("Denver", "US", "CO"), ("Boston", "US", "MA"),
          ("Seattle", "US", "WA"), ("Chicago", "US", "IL"), ("Toronto", "CA", "ON"),
          ("Vancouver", "CA", "BC"),
          ("London", "GB", ""), ("Manchester", "GB", ""), ("Dublin", "IE", ""), ("Berlin", "DE", ""),
          ("Munich", "DE", ""), ("Hamburg", "DE", ""), ("Paris", "FR", ""), ("Lyon", "FR", ""),
          ("Madrid", "ES", ""), ("Barcelona", "ES", ""), ("Lisbon", "PT", ""), ("Rome", "IT", ""),
          ("Milan", "IT", ""), ("Amsterdam", "NL", ""), ("Stockholm", "SE", ""), ("Oslo", "NO", ""),
          ("Copenhagen", "DK", ""), ("Warsaw", "PL", ""), ("Prague", "CZ", ""), ("Vienna", "AT", ""),
          ("Zurich", "CH", ""), ("Tokyo", "JP", ""), ("Osaka", "JP", ""), ("Seoul", "KR", ""),
          ("Singapore", "SG", ""), ("Sydney", "AU", "NSW"), ("Melbourne", "AU", "VIC"),
          ("Auckland", "NZ", ""),
          ("Sao Paulo", "BR", "SP"), ("Mexico City", "MX", ""), ("Bangalore", "IN", "KA"),
          ("Nairobi", "KE", ""),
          ("Lagos", "NG", ""), ("Cape Town", "ZA", ""), ("Cairo", "EG", ""), ("Istanbul", "TR", ""))
STREETS = ("Main St", "Oak Avenue", "Maple Drive", "Elm Street", "Park Road", "High Street", "Station Road",
           "Church Lane", "Mill Lane", "Lakeview Blvd", "Sunset Way", "River Road", "Hillcrest Ave",
           "Cedar Ct",
           "Kingsway", "Queen Street", "Harbour View", "Birch Close", "Linden Allee", "Rue de la Paix")
MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "icloud.com", "fastmail.com",
                "example.com", "example.org", "mail.test", "acme.io", "globex.net", "initech.co")
NOUNS = _words("account address alert answer app archive backup balance batch bill branch bucket budget bug "
               "build cache calendar camera card cart channel chart checkout client cluster column comment "
               "config contract cookie coupon cron customer dashboard database dataset deadline deploy "
               "device diff discount disk document domain draft driver email endpoint error event export "
               "feature feed field file filter folder form gateway graph group handler header image index "
               "invoice issue item job key label layout ledger license list lock log login mailbox map menu "
               "merge message metric migration model module monitor network node note notebook order package "
               "page partition password patch payload payment permission pipeline plan plugin policy poll "
               "port post preview price printer profile project prompt query queue quota rate receipt record "
               "region release report repo request result review role route schedule schema screen script "
               "secret server service session setting sheet shipment signal sprint stack status storage "
               "stream subscription survey table tag task template test thread ticket timeout token topic "
               "trace track transfer trigger upload user vendor version video volume wallet webhook widget "
               "window worker workflow zone")
VERBS = _words("add archive approve build cancel change check clean clone close commit compare configure "
               "connect copy create debug delete deploy disable download drop edit enable export fetch "
               "filter fix flush format generate import install kill launch link load lock log merge migrate "
               "move open parse patch ping publish pull push rebase rebuild refresh reload remove rename "
               "render repair replace reset resize restart restore retry revert review rollback rotate run "
               "save scale schedule search send ship sort split start stop submit sync tag test trim unlock "
               "update upgrade upload validate verify watch wrap")
ADJS = _words("active agile ancient annual automatic average basic blue broken busy careful cheap clean "
              "clear cold complex correct crisp current daily dark deep default direct dirty early easy "
              "empty exact extra fair fast final fine flat fresh full global good great green happy hard "
              "heavy hidden huge idle internal large late legacy light little live local long loud main "
              "manual minor missing modern monthly narrow native new nightly normal odd old open optional "
              "orange outer partial pending plain polite primary private public quick quiet random rare raw "
              "ready recent red remote rough round safe secure shared short silent simple slow small smart "
              "soft solid spare stable stale strict strong sudden sweet tall temporary thin tiny total "
              "tricky urgent useful valid warm weekly wide wild yellow young")
SERVICES = ("api-gateway", "auth", "billing", "checkout", "inventory", "search", "notifier", "scheduler",
            "ingest", "media", "reports", "payments", "catalog", "recommendations", "users", "webhooks")
PRODUCTS = ("USB-C cable", "wireless mouse", "mechanical keyboard", "27in monitor", "laptop stand",
            "desk lamp",
            "coffee grinder", "french press", "water bottle", "running shoes", "yoga mat", "backpack",
            "notebook A5", "fountain pen", "headphones", "phone case", "charger 65W", "webcam HD",
            "tea sampler",
            "olive oil 500ml", "dark chocolate", "hiking socks", "rain jacket", "bike light", "plant pot")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "INR", "BRL")
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "WARN", "ERROR")
HTTP_METHODS = ("GET", "GET", "GET", "GET", "POST", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
HTTP_STATUS = (200, 200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 404, 409, 422, 429, 500,
               502, 503, 504)
USER_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 "
     "Safari/537.36"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.{m} Safari/605.1.15"),
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.{m} Mobile/15E148 Safari/604.1"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel {m}) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/{v}.0.0.0 Mobile Safari/537.36"),
    "curl/8.{m}.0", "python-requests/2.3{m}.0", "Go-http-client/1.1", "kube-probe/1.2{m}",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "okhttp/4.{m}.0",
    "PostmanRuntime/7.3{m}.0", "Wget/1.21.{m}",
)
RESOURCES = ("users", "orders", "products", "carts", "invoices", "sessions", "reports", "search", "comments",
             "files", "teams", "projects", "tickets", "payments", "webhooks", "events", "metrics", "tokens")
EXCEPTIONS = (("KeyError", "'{w}'"), ("ValueError", "invalid literal for int() with base 10: '{w}'"),
              ("TypeError", "'NoneType' object is not subscriptable"),
              ("AttributeError", "'dict' object has no attribute '{w}'"),
              ("ConnectionError", "HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded"),
              ("TimeoutError", "timed out after {n} seconds"), ("IndexError", "list index out of range"),
              ("ZeroDivisionError", "division by zero"),
              ("RuntimeError", "{w} worker pool is closed"),
              ("PermissionError", "[Errno 13] Permission denied: '/var/lib/{svc}/{w}.lock'"),
              ("FileNotFoundError", "[Errno 2] No such file or directory: '/etc/{svc}/{w}.yaml'"),
              ("psycopg2.OperationalError", "could not connect to server: Connection refused"),
              ("json.decoder.JSONDecodeError", "Expecting value: line 1 column {n} (char {m})"))
JAVA_EXC = ("java.lang.NullPointerException", "java.lang.IllegalStateException: {w} not initialized",
            "java.util.concurrent.TimeoutException",
            ("java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request "
             "timed out after {n}ms."),
            "java.lang.IllegalArgumentException: invalid {w} id: {n}", "java.io.IOException: Broken pipe")
LOG_MSGS = ("request completed", "request started", "cache miss for {noun}:{id}", "cache hit for {noun}:{id}",
            "{noun} {id} created", "{noun} {id} updated by user {uid}", "deleted {n} expired {noun}s",
            "retrying {verb} {noun} (attempt {k}/5) after {err}", "connected to {db} at {ip}:{port}",
            "slow query ({ms} ms): SELECT * FROM {noun}s WHERE id = ${k}", "payment {id} declined: {reason}",
            "user {uid} logged in from {ip}", "user {uid} failed login: bad password",
            "job {job} finished in {s}s", "job {job} failed: {err}", "scheduled {n} {noun}s for {verb}",
            "rate limit exceeded for client {ip}",
            "config reloaded from /etc/{svc}/{svc}.yaml", "shutting down worker {k}", "worker {k} started",
            "health check failed: {err}", "queue {noun}s depth {n}", "sent email to {email}",
            "webhook delivery to {url} returned {status}", "token refreshed for user {uid}",
            "feature flag {flag} enabled for {pct}% of users", "migrated {n} rows of {noun}s in {ms} ms")
ERRORS = ("connection reset by peer", "context deadline exceeded", "i/o timeout", "EOF",
          "too many open files", "no route to host", "certificate has expired", "deadlock detected",
          "503 Service Unavailable", "broken pipe", "disk quota exceeded",
          "invalid character '<' looking for beginning of value")
DECLINES = ("insufficient_funds", "card_expired", "do_not_honor", "fraud_suspected", "incorrect_cvc")
UNITS = ("nginx.service", "postgresql.service", "docker.service", "cron.service", "ssh.service",
         "redis-server.service", "certbot.timer", "apt-daily.service", "logrotate.service", "{svc}.service")


def _word(rng: random.Random, n: int = 1, pool=NOUNS) -> str:
    return " ".join(rng.choice(pool) for _ in range(n))


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def _ip(rng: random.Random, public: bool | None = None) -> str:
    if public is None:
        public = rng.random() < 0.6
    if not public:
        return rng.choice((f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                           f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"))
    return f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _email(rng: random.Random, first: str | None = None, last: str | None = None) -> str:
    first, last = (first, last) if first else _name(rng)
    local = rng.choice((f"{first}.{last}", f"{first}{last[0]}", f"{first[0]}{last}", f"{first}_{last}",
                        f"{first}{rng.randint(1, 99)}", f"{last}.{first}"))
    return f"{local}@{rng.choice(MAIL_DOMAINS)}"


def _time(rng: random.Random) -> datetime:
    start = datetime(2019, 1, 1, tzinfo=UTC)
    return start + timedelta(seconds=rng.randint(0, 6 * 365 * 86400), microseconds=rng.randint(0, 999_999))


def _fill(rng: random.Random, template: str, svc: str = "app") -> str:
    """Fill the {slots} a log or chat template may use."""
    first, last = _name(rng)
    c = rng.choice
    slots = {
        "noun": c(NOUNS), "verb": c(VERBS), "adj": c(ADJS), "w": c(NOUNS),
        "id": c((str(rng.randint(1, 999_999)), _uuid(rng)[:8], f"{c('ABCDEFGH')}-{rng.randint(100, 99999)}")),
        "uid": str(rng.randint(1, 250_000)), "n": str(rng.randint(2, 5000)), "m": str(rng.randint(1, 900)),
        "k": str(rng.randint(1, 5)), "ms": str(rng.randint(200, 9000)), "s": f"{rng.uniform(0.1, 600):.2f}",
        "ip": _ip(rng), "port": str(rng.choice((5432, 6379, 3306, 9200, 27017, 8080, 443, 9092))),
        "db": rng.choice(("postgres", "redis", "mysql", "elasticsearch", "mongodb", "kafka")),
        "err": c(ERRORS), "reason": c(DECLINES), "job": f"{c(VERBS)}-{c(NOUNS)}s",
        "email": _email(rng, first, last), "svc": svc, "host": f"{c(NOUNS)}.{c(MAIL_DOMAINS)}",
        "url": f"https://{rng.choice(NOUNS)}.{rng.choice(MAIL_DOMAINS)}/hooks/{_hex(rng, 12)}",
        "status": str(rng.choice(HTTP_STATUS)), "flag": f"{rng.choice(ADJS)}_{rng.choice(NOUNS)}",
        "pct": str(rng.choice((1, 5, 10, 25, 50, 100))), "first": first.title(), "last": last.title(),
        "day": rng.choice(("monday", "tuesday", "wednesday", "thursday", "friday", "tomorrow", "next week")),
        "time": f"{rng.randint(8, 18)}:{rng.choice(('00', '15', '30', '45'))}",
    }
    return template.format(**slots)


# --------------------------------------------------------------------------------------------------- logs

def _syslog_line(rng: random.Random, t: datetime, host: str, svc: str) -> str:
    c = rng.choice
    prog = rng.choice(("sshd", "sshd", "systemd", "systemd", "CRON", "kernel", "dockerd", "postfix/smtp",
                       "sudo", svc))
    pid = rng.randint(300, 65000)
    user = rng.choice(("deploy", "root", "ubuntu", "admin", "git", rng.choice(FIRST)))
    ip, port = _ip(rng), rng.randint(1024, 65535)
    unit = rng.choice(UNITS).format(svc=svc)
    if prog == "sshd":
        msg = rng.choice((f"Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:"
                          + "".join(c(string.ascii_letters + string.digits + "+/") for _ in range(43)),
                          f"Failed password for invalid user {user} from {ip} port {port} ssh2",
                          f"Connection closed by authenticating user {user} {ip} port {port} [preauth]",
                          (f"pam_unix(sshd:session): session opened for user {user}"
                           f"(uid={rng.randint(1000, 1010)}) by (uid=0)"),
                          f"Disconnected from user {user} {ip} port {port}",
                          f"Invalid user {rng.choice(NOUNS)} from {ip} port {port}"))
    elif prog == "systemd":
        msg = rng.choice((f"Started {unit} - {rng.choice(ADJS).title()} {rng.choice(NOUNS)} daemon.",
                          f"Stopping {unit}...", f"{unit}: Deactivated successfully.",
                          f"{unit}: Main process exited, code=exited, status={rng.randint(1, 3)}/FAILURE",
                          f"{unit}: Failed with result 'exit-code'.",
                          f"{unit}: Consumed {rng.uniform(0.01, 90):.3f}s CPU time.",
                          f"Reloading {unit}...", f"Starting {unit}..."))
    elif prog == "CRON":
        script = f"{c(('/usr/local/bin/', 'cd /srv/app && ./'))}{c(VERBS)}-{c(NOUNS)}s.sh"
        msg = f"({user}) CMD ({script} > /dev/null 2>&1)"
    elif prog == "kernel":
        up = f"[{rng.uniform(1, 9_000_000):12.6f}]"
        msg = up + " " + rng.choice((
            (f"Out of memory: Killed process {pid} ({svc}) total-vm:{rng.randint(10**5, 10**7)}kB, anon-rss:"
             f"{rng.randint(10**4, 10**6)}kB, file-rss:0kB, shmem-rss:0kB, UID:{rng.randint(0, 1000)}"),
            (f"EXT4-fs (nvme0n1p{rng.randint(1, 4)}): mounted filesystem with ordered data mode. "
             "Quota mode: none."),
            f"TCP: request_sock_TCP: Possible SYN flooding on port {c((80, 443, 22))}. Sending cookies.",
            f"eth0: renamed from veth{_hex(rng, 7)}",
            (f"docker0: port {rng.randint(1, 9)}(veth{_hex(rng, 7)}) "
             f"entered {rng.choice(('blocking', 'forwarding', 'disabled'))} state"),
            (f"[UFW BLOCK] IN=eth0 OUT= MAC={':'.join(_hex(rng, 2) for _ in range(14))} SRC={ip} "
             f"DST={_ip(rng, False)} LEN={rng.randint(40, 1500)} TTL={rng.randint(30, 128)} PROTO=TCP "
             f"SPT={port} DPT={rng.choice((22, 23, 3389, 5900, 8080))}")))
        return f"{t:%b} {t.day:2d} {t:%H:%M:%S} {host} kernel: {msg}"
    elif prog == "dockerd":
        text = c(("ignoring event", "Container failed to exit within 10s of signal 15 - using the force",
                  "cleaning up dead shim", "Health check failed"))
        msg = (f'time="{t:%Y-%m-%dT%H:%M:%S.%f}Z" level={c(("info", "warning", "error"))} msg="{text}" '
               f'container={_hex(rng, 64)} module=libcontainerd namespace=moby')
    elif prog == "postfix/smtp":
        d = [rng.uniform(0, 2) for _ in range(4)]
        relay = c(("aspmx.l.google.com", "mx1.mail.test", "smtp.example.org"))
        msg = (f"{_hex(rng, 10).upper()}: to=<{_email(rng)}>, relay={relay}"
               f"[{_ip(rng, True)}]:25, delay={sum(d):.2f}, delays={'/'.join(f'{x:.2f}' for x in d)}, "
               f"dsn=2.0.0, status=sent (250 2.0.0 OK {rng.randint(10**9, 2 * 10**9)} - gsmtp)")
    elif prog == "sudo":
        cmd = c((f"systemctl restart {unit}", f"journalctl -u {unit}", "apt-get upgrade -y",
                 "tail -f /var/log/syslog"))
        msg = f"{user} : TTY=pts/{rng.randint(0, 5)} ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/{cmd}"
    else:
        msg = _fill(rng, rng.choice(LOG_MSGS), svc)
    if rng.random() < 0.3:
        return f"{t:%Y-%m-%dT%H:%M:%S.%f}+00:00 {host} {prog}[{pid}]: {msg}"
    return f"{t:%b} {t.day:2d} {t:%H:%M:%S} {host} {prog}[{pid}]: {msg}"


def _json_log_line(rng: random.Random, t: datetime, host: str, svc: str, style: int) -> str:
    level = rng.choice(LEVELS)
    ts_key, lvl_key, msg_key = (("timestamp", "level", "message"), ("ts", "lvl", "msg"),
                                ("@timestamp", "log.level", "message"), ("time", "severity", "msg"))[style]
    ts = f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z" if style != 1 else round(t.timestamp(), 3)
    rec: dict = {ts_key: ts, lvl_key: level.lower() if style in (1, 3) else level}
    rec["service" if style != 1 else "svc"] = svc
    rec[msg_key] = _fill(rng, rng.choice(LOG_MSGS), svc)
    if rng.random() < 0.7:
        rec["request_id"] = _uuid(rng)
    if rng.random() < 0.5:
        rec["method"] = rng.choice(HTTP_METHODS)
        rec["path"] = f"/api/v{rng.randint(1, 3)}/{rng.choice(RESOURCES)}"
        rec["status"], rec["duration_ms"] = rng.choice(HTTP_STATUS), round(rng.lognormvariate(3, 1.2), 2)
    if rng.random() < 0.3:
        rec["user_id"] = rng.randint(1, 250_000)
    if rng.random() < 0.3:
        rec["host"] = host
    if rng.random() < 0.2:
        rec["trace_id"], rec["span_id"] = _hex(rng, 32), _hex(rng, 16)
    if level == "ERROR" and rng.random() < 0.5:
        exc, text = rng.choice(EXCEPTIONS)
        rec["error"] = {"type": exc, "message": _fill(rng, text, svc)}
    return json.dumps(rec, separators=(",", ":") if style != 2 else (", ", ": "))


def _logfmt_line(rng: random.Random, t: datetime, host: str, svc: str) -> str:
    msg = _fill(rng, rng.choice(LOG_MSGS), svc)
    parts = [f"time={t:%Y-%m-%dT%H:%M:%S.%f}Z", f"level={rng.choice(LEVELS).lower()}", f'msg="{msg}"',
             f"component={svc}"]
    if rng.random() < 0.6:
        parts.append(f"duration={rng.lognormvariate(2, 1.5):.3f}ms")
    if rng.random() < 0.5:
        parts.append(f"remote_addr={_ip(rng)}:{rng.randint(1024, 65535)}")
    if rng.random() < 0.3:
        parts.append(f"err=\"{rng.choice(ERRORS)}\"")
    return " ".join(parts)


NGINX_ERRORS = ("upstream timed out (110: Connection timed out) while reading response header from upstream",
                "connect() failed (111: Connection refused) while connecting to upstream",
                "upstream prematurely closed connection while reading response header from upstream",
                "client intended to send too large body: {n} bytes")


def _nginx_line(rng: random.Random, t: datetime, host: str, svc: str) -> str:
    method = rng.choice(HTTP_METHODS)
    path = rng.choice((
        f"/api/v{rng.randint(1, 3)}/{rng.choice(RESOURCES)}",
        f"/api/v{rng.randint(1, 3)}/{rng.choice(RESOURCES)}/{rng.randint(1, 99999)}",
        f"/api/v1/{rng.choice(RESOURCES)}?page={rng.randint(1, 40)}&per_page={rng.choice((10, 20, 50, 100))}",
        (f"/static/{rng.choice(('js', 'css'))}/{rng.choice(('app', 'vendor', 'main', 'chunk'))}."
         f"{_hex(rng, 8)}.{rng.choice(('js', 'css'))}"),
        f"/images/{rng.choice(NOUNS)}-{rng.randint(1, 500)}.{rng.choice(('png', 'jpg', 'webp', 'svg'))}",
        "/", "/login", "/logout", "/healthz", "/metrics", "/favicon.ico", "/robots.txt",
        f"/{rng.choice(('wp-login.php', '.env', '.git/config', 'phpmyadmin/index.php', 'cgi-bin/luci'))}",
        f"/search?q={rng.choice(NOUNS)}+{rng.choice(NOUNS)}", f"/{rng.choice(RESOURCES)}/{_uuid(rng)}"))
    status = rng.choice(HTTP_STATUS)
    ua = rng.choice(USER_AGENTS).format(v=rng.randint(100, 125), m=rng.randint(0, 9))
    ref = rng.choice(("-", "-", f"https://{host}/", f"https://www.{rng.choice(MAIL_DOMAINS)}/"))
    if rng.random() < 0.12:
        up = f"{_ip(rng, False)}:{rng.choice((8000, 8080, 3000, 9000))}"
        return (f"{t:%Y/%m/%d %H:%M:%S} [{rng.choice(('error', 'warn', 'crit'))}] {rng.randint(10, 4000)}#"
                f"{rng.randint(0, 9)}: *{rng.randint(1, 10**7)} "
                + rng.choice(NGINX_ERRORS).format(n=rng.randint(10**6, 10**8))
                + f', client: {_ip(rng)}, server: {host}, request: "{method} {path} HTTP/1.1", upstream: '
                f'"http://{up}{path}", host: "{host}"')
    line = (f'{_ip(rng)} - {rng.choice(("-", "-", "-", rng.choice(FIRST)))} [{t:%d/%b/%Y:%H:%M:%S} +0000] '
            f'"{method} {path} HTTP/{rng.choice(("1.1", "1.1", "2.0"))}" {status} '
            f'{0 if status in (204, 304) else rng.randint(40, 250_000)} "{ref}" "{ua}"')
    if rng.random() < 0.5:
        line += f" {rng.lognormvariate(-3, 1.3):.3f}"
    return line


def _applog_line(rng: random.Random, t: datetime, host: str, svc: str, style: int) -> str:
    c = rng.choice
    level = c(LEVELS)
    msg = _fill(rng, c(LOG_MSGS), svc)
    ms = f"{t.microsecond // 1000:03d}"
    if style == 0:     # Spring Boot
        cls = f"{c('coi')}.{c('agi')}.{svc.replace('-', '')}.{c(NOUNS).title()}"
        cls += c(("Service", "Controller", "Repository", "Client"))
        thread = c(("main", f"nio-8080-exec-{rng.randint(1, 10)}", "scheduling-1",
                    f"task-{rng.randint(1, 8)}"))
        return f"{t:%Y-%m-%d %H:%M:%S}.{ms} {level:>5} {rng.randint(1, 99)} --- [{thread}] {cls:<40} : {msg}"
    if style == 1:     # Python logging, the common format
        logger = f"{svc.replace('-', '_')}.{c(('api', 'worker', 'db', 'tasks', 'views', 'client'))}"
        return f"{t:%Y-%m-%d %H:%M:%S},{ms} {level.replace('WARN', 'WARNING')} [{logger}] {msg}"
    # Go's glog / klog
    where = f"{c(NOUNS)}.go:{rng.randint(10, 900)}"
    return f"{level[0]}{t:%m%d %H:%M:%S.%f} {rng.randint(1, 99999):>7} {where}] {msg}"


def _python_traceback(rng: random.Random, t: datetime, svc: str) -> list[str]:
    c = rng.choice
    app = svc.replace("-", "_")
    exc, text = c(EXCEPTIONS)
    what = c(("Unhandled exception in task", "Exception on", "Error while handling"))
    logger = f"{app}.{c(('worker', 'api', 'tasks'))}"
    head = f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} ERROR [{logger}] {what} {c(VERBS)}_{c(NOUNS)}"
    lines = [head, "Traceback (most recent call last):"]
    for _ in range(rng.randint(1, 2)):
        func = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"
        module = c(("handlers", "tasks", "models", "views", "client", "utils"))
        lines.append(f'  File "/srv/{app}/{app}/{module}.py", line {rng.randint(12, 900)}, in {func}')
        lines.append("    " + rng.choice((f"return self.{c(VERBS)}_{c(NOUNS)}({c(NOUNS)})",
                                          f"result = await client.{c(VERBS)}({c(NOUNS)}_id)",
                                          "data = json.loads(payload)", "row = cursor.fetchone()[0]",
                                          f"{c(NOUNS)} = {c(NOUNS)}s[{c(NOUNS)}_id]",
                                          f"total = sum(i.price for i in {rng.choice(NOUNS)}.items) / count",
                                          f"resp = session.get(url, timeout={rng.choice((5, 10, 30))})")))
    lines.append(f"{exc}: {_fill(rng, text, svc)}")
    return lines


def _java_trace(rng: random.Random, t: datetime, svc: str) -> list[str]:
    pkg = f"com.{rng.choice(('acme', 'globex', 'initech'))}.{svc.replace('-', '')}"
    head = (f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} ERROR {rng.randint(1, 99)} --- "
            f"[nio-8080-exec-{rng.randint(1, 10)}] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : "
            "Servlet.service() threw exception")
    lines = [head, _fill(rng, rng.choice(JAVA_EXC), svc)]
    for _ in range(rng.randint(2, 6)):
        cls = f"{rng.choice(NOUNS).title()}{rng.choice(('Service', 'Controller', 'Repository', 'Mapper'))}"
        method = f"{rng.choice(VERBS)}{rng.choice(NOUNS).title()}"
        lines.append(f"\tat {pkg}.{cls}.{method}({cls}.java:{rng.randint(20, 800)})")
    return lines


LINE_MAKERS: dict[str, Callable[[random.Random, datetime, str, str, int], str]] = {
    "syslog": lambda rng, t, host, svc, style: _syslog_line(rng, t, host, svc),
    "json": _json_log_line,
    "logfmt": lambda rng, t, host, svc, style: _logfmt_line(rng, t, host, svc),
    "nginx": lambda rng, t, host, svc, style: _nginx_line(rng, t, host, svc),
    "app": _applog_line,
}


def logs(seed: int = SEED) -> Iterator[str]:
    """Log messages: 1-8 consecutive lines of one format, host and service, timestamps moving forward."""
    rng = rng_for(f"synthetic/logs/{seed}")
    while True:
        t, svc = _time(rng), rng.choice(SERVICES)
        role = rng.choice(("web", "api", "db", "worker", "cache", "lb", "node", "edge"))
        host = f"{role}-{rng.randint(1, 40):02d}"
        kind = rng.choices(("syslog", "json", "logfmt", "nginx", "app", "pytb", "javatb"),
                           (5, 5, 2, 5, 4, 2, 1))[0]
        if kind == "pytb":
            lines = _python_traceback(rng, t, svc)
        elif kind == "javatb":
            lines = _java_trace(rng, t, svc)
        else:
            style = rng.randint(0, 3) if kind == "json" else rng.randint(0, 2)
            line, lines = LINE_MAKERS[kind], []
            for _ in range(rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8))):
                t += timedelta(microseconds=int(rng.expovariate(1 / 400_000)))
                lines.append(line(rng, t, host, svc, style))
        yield from _fit("\n".join(lines))


def _fit(text: str) -> Iterator[str]:
    """Yield ``text`` if it is in the size window; a longer one is cut back to whole lines that fit."""
    while nbytes(text) > MAX_BYTES and "\n" in text:
        text = text.rsplit("\n", 1)[0]
    if MIN_BYTES <= nbytes(text) <= MAX_BYTES:
        yield text


# ------------------------------------------------------------------------------------------------ records

def _money(rng: random.Random) -> float:
    return round(rng.lognormvariate(3, 1), 2)


def _stamp(rng: random.Random) -> str:
    return _time(rng).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user(rng: random.Random) -> dict:
    c = rng.choice
    first, last = _name(rng)
    city, country, region = c(CITIES)
    rec: dict = {"id": c((rng.randint(1, 999_999), _uuid(rng))),
                 "username": f"{first}{last[:rng.randint(1, 4)]}{rng.randint(0, 99)}",
                 "name": f"{first.title()} {last.title()}", "email": _email(rng, first, last),
                 "created_at": _stamp(rng), "is_active": rng.random() < 0.85}
    if rng.random() < 0.6:
        rec["roles"] = rng.sample(("admin", "editor", "viewer", "billing", "support", "owner"),
                                  rng.randint(1, 3))
    if rng.random() < 0.5:
        rec["address"] = {"street": f"{rng.randint(1, 999)} {c(STREETS)}", "city": city,
                          "postal_code": f"{rng.randint(1000, 99999)}", "country": country}
        if region:
            rec["address"]["region"] = region
    if rng.random() < 0.4:
        rec["preferences"] = {"theme": c(("light", "dark", "system")),
                              "language": c(("en", "en-GB", "de", "fr", "es", "ja", "pt-BR")),
                              "newsletter": rng.random() < 0.3}
    if rng.random() < 0.3:
        rec["last_login"] = {"at": _stamp(rng), "ip": _ip(rng, True)}
    return rec


def _order(rng: random.Random) -> dict:
    c = rng.choice
    items = [{"sku": f"{c(string.ascii_uppercase)}{c(string.ascii_uppercase)}-{rng.randint(1000, 9999)}",
              "name": c(PRODUCTS), "qty": c((1, 1, 1, 2, 3, 5)), "unit_price": _money(rng)}
             for _ in range(rng.randint(1, 4))]
    city, country, _ = c(CITIES)
    rec = {"order_id": f"ORD-{rng.randint(2019, 2025)}-{rng.randint(1, 999_999):06d}",
           "customer_id": rng.randint(1, 250_000),
           "status": c(("pending", "paid", "shipped", "delivered", "cancelled", "refunded")),
           "currency": c(CURRENCIES), "items": items,
           "total": round(sum(i["qty"] * i["unit_price"] for i in items), 2),
           "placed_at": _time(rng).strftime("%Y-%m-%dT%H:%M:%S%z")}
    if rng.random() < 0.6:
        rec["shipping"] = {"method": c(("standard", "express", "pickup")), "city": city, "country": country,
                           "tracking": c((None, f"1Z{_hex(rng, 16).upper()}"))}
    if rng.random() < 0.3:
        rec["coupon"] = c(ADJS).upper() + str(c((5, 10, 15, 20)))
    return rec


def _event(rng: random.Random) -> dict:
    c = rng.choice
    name = c(("page_view", "click", "signup", "add_to_cart", "purchase", "search", "login", "logout",
              "video_play", "share", "error"))
    props: dict = {"page": f"/{c(RESOURCES)}/{rng.randint(1, 9999)}"}
    if name == "search":
        props = {"query": f"{c(ADJS)} {c(NOUNS)}", "results": rng.randint(0, 500)}
    elif name in ("add_to_cart", "purchase"):
        props = {"product": c(PRODUCTS), "price": _money(rng), "currency": c(CURRENCIES)}
    elif name == "error":
        props = {"message": c(ERRORS), "component": c(NOUNS)}
    return {"event": name, "user_id": c((None, rng.randint(1, 250_000))), "session_id": _hex(rng, 16),
            "timestamp": int(_time(rng).timestamp() * 1000), "properties": props,
            "context": {"ip": _ip(rng, True), "locale": c(("en-US", "de-DE", "fr-FR", "ja-JP", "es-ES")),
                        "device": c(("desktop", "mobile", "tablet"))}}


def _sensor(rng: random.Random) -> dict | list:
    dev = f"sensor-{rng.choice(('th', 'aq', 'pw', 'gps'))}-{rng.randint(1, 999):03d}"
    t = _time(rng)

    def reading(t: datetime) -> dict:
        return {"device_id": dev, "ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "temperature_c": round(rng.gauss(21, 6), 1), "humidity_pct": round(rng.uniform(15, 95), 1),
                "battery_v": round(rng.uniform(2.9, 4.2), 2), "rssi_dbm": rng.randint(-95, -40)}
    if rng.random() < 0.5:
        r = reading(t)
        if rng.random() < 0.5:
            r["location"] = {"lat": round(rng.uniform(-60, 70), 5), "lon": round(rng.uniform(-180, 180), 5)}
        if rng.random() < 0.3:
            r["pm2_5"], r["co2_ppm"] = round(rng.uniform(1, 80), 1), rng.randint(380, 2500)
        return r
    return [reading(t + timedelta(minutes=5 * i)) for i in range(rng.randint(2, 4))]


def _config(rng: random.Random) -> dict:
    c = rng.choice
    svc = c(SERVICES)
    db = svc.replace("-", "_")
    cfg: dict = {"service": svc, "version": f"{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
                 "server": {"host": c(("0.0.0.0", "127.0.0.1", "::")), "port": c((8000, 8080, 9000, 3000)),
                            "read_timeout": f"{c((5, 10, 30))}s", "workers": c((2, 4, 8, 16))}}
    if rng.random() < 0.7:
        cfg["database"] = {"url": f"postgres://{db}@db-{rng.randint(1, 9):02d}.internal:5432/{db}",
                           "pool_size": c((5, 10, 20)), "ssl_mode": c(("require", "verify-full", "disable"))}
    if rng.random() < 0.6:
        cfg["logging"] = {"level": c(("debug", "info", "warn")), "format": c(("json", "text")),
                          "output": c(("stdout", f"/var/lib/{svc}/{svc}.out"))}
    if rng.random() < 0.5:
        cfg["features"] = {f"{c(ADJS)}_{c(NOUNS)}": rng.random() < 0.5 for _ in range(rng.randint(1, 4))}
    if rng.random() < 0.3:
        cfg["tls"] = {"enabled": True, "cert_file": f"/etc/{svc}/tls.crt", "key_file": f"/etc/{svc}/tls.key",
                      "min_version": c(("1.2", "1.3"))}
    return cfg


def _page(rng: random.Random) -> dict:
    per = rng.choice((2, 3))
    data = [rng.choice((_user, _event))(rng) if rng.random() < 0.3 else
            {"id": rng.randint(1, 99999), "name": f"{rng.choice(ADJS)} {rng.choice(NOUNS)}",
             "updated_at": _stamp(rng)} for _ in range(per)]
    return {"data": data,
            "meta": {"page": rng.randint(1, 50), "per_page": per, "total": rng.randint(per, 5000)},
            "links": {"next": f"/api/v1/{rng.choice(RESOURCES)}?page={rng.randint(2, 51)}"}}


RECORD_KINDS: tuple[Callable[[random.Random], dict | list], ...] = (
    _user, _order, _event, _sensor, _config, _page)
JSON_FORMS = {"compact": {"separators": (",", ":")}, "spaced": {}, "indent2": {"indent": 2},
              "indent4": {"indent": 4}}


def records(seed: int = SEED) -> Iterator[str]:
    """JSON records of one kind: compact, with spaces, pretty-printed (2 or 4), or a few as JSON lines."""
    rng = rng_for(f"synthetic/records/{seed}")
    while True:
        make = rng.choice(RECORD_KINDS)
        form = rng.choices(("compact", "spaced", "indent2", "indent4", "lines"), (3, 2, 3, 1, 2))[0]
        if form == "lines":
            text = "\n".join(json.dumps(make(rng), separators=(",", ":"), ensure_ascii=False)
                             for _ in range(rng.randint(2, 5)))
        else:
            rec = make(rng)
            text = json.dumps(rec, ensure_ascii=False, sort_keys=rng.random() < 0.2, **JSON_FORMS[form])
        if MIN_BYTES <= nbytes(text) <= MAX_BYTES:
            yield text


# --------------------------------------------------------------------------------------------------- chat

CHAT_LINES = (
    "hey {first}, did you get a chance to look at the {noun} {verb}?", "lol yes",
    "ok I'll {verb} it after lunch", "can we move the {noun} sync to {day}?", "thanks!!", "np",
    "sounds good 👍", "on it", "brb", "wait, which {noun}?", "the {adj} one, from yesterday",
    "did the {job} job finish?", "it's still failing with {err} :(", "try restarting the {svc} pod",
    "works now, thanks!", "anyone know why the {noun} page is so slow today?",
    "looks like {db} is at 100% cpu",
    "I pushed a fix, can you review? PR #{m}", "approved ✅", "merging", "deployed to staging",
    "lunch at {time}?", "I'm in", "running 10 min late sorry", "happy friday everyone 🎉",
    "where did we land on the {adj} {noun}?", "I think we agreed to {verb} it next sprint",
    "can you send me the {noun} link?", "here: https://{host}/{noun}/{id}", "got it",
    "is the {noun} meeting still on?", "yes, {time} in the usual room", "who's on call this week?",
    "me, ping me if anything breaks", "the {noun} alert fired again", "silenced it for 2h, looking into it",
    "how do I {verb} the {noun}?", "there's a script for that in tools/", "omg finally 😂",
    "good morning!", "morning ☕", "I'll be out {day}", "noted", "ty", "cool cool",
    "quick q: do we still need the {adj} {noun}?", "nope, we can {verb} it",
    "let me check and get back to you", "can you hop on a call?", "sure, give me 5",
    "ugh the build is red again", "my bad, fixing", "{first} said the {noun} numbers look off", "off how?",
    "about {pct}% lower than last week",
)
NAMES_FOR_CHAT = _words("alice bob carol dave erin frank grace heidi ivan judy mallory oscar peggy trent "
                        "victor walter")
TASKS = (
    ("undo the last git commit",
     ["git reset --soft HEAD~1", "git log --oneline", "git push --force-with-lease"]),
    ("create a Python virtual environment",
     ["python3 -m venv .venv", "source .venv/bin/activate", "pip install -r requirements.txt"]),
    ("find large files on Linux", ["du -ah / | sort -rh | head -20", "find / -size +500M", "ncdu /"]),
    ("reverse a list in Python", ["items.reverse()", "items[::-1]", "list(reversed(items))"]),
    ("check which process uses a port", ["ss -ltnp", "lsof -i :8080", "fuser 8080/tcp"]),
    ("rename a branch in git",
     ["git branch -m old new", "git push origin -u new", "git push origin --delete old"]),
    ("parse JSON in JavaScript", ["JSON.parse(text)", "JSON.stringify(obj, null, 2)", "await res.json()"]),
    ("set up a cron job", ["crontab -e", "*/5 * * * * /usr/local/bin/job.sh", "crontab -l"]),
    ("read a CSV file with pandas", ['pd.read_csv("data.csv")', "df.head()", "df.dtypes"]),
    ("resize an image from the command line",
     ["convert in.png -resize 50% out.png", "mogrify -resize 800x *.jpg", "identify out.png"]),
    ("write a SQL query for the top customers",
     ["SELECT customer_id, SUM(total) FROM orders", "GROUP BY customer_id", "ORDER BY 2 DESC LIMIT 10"]),
    ("debug a failing Docker container",
     ["docker logs -f app", "docker exec -it app sh", "docker inspect app"]),
    ("make a Go HTTP server", ['http.HandleFunc("/", handler)', 'http.ListenAndServe(":8080", nil)',
                               "go run main.go"]),
    ("sort a dictionary by value",
     ["sorted(d.items(), key=lambda kv: kv[1])", "dict(sorted(...))", "heapq.nlargest(3, d, key=d.get)"]),
    ("copy files between servers",
     ["scp file.txt user@host:/tmp/", "rsync -avz src/ host:dst/", "sftp user@host"]),
)
TOPICS = ("sleep", "bread baking", "learning a language", "saving money", "running a first marathon",
          "houseplants", "remote work", "writing a cover letter", "public speaking", "home coffee",
          "composting", "time management", "cycling to work", "reading more books", "meal prep")
INTROS = ("Sure! Here's how to {t}:", "You can {t} in a few steps:", "To {t}, do this:",
          "Good question. The simplest way to {t} is:", "Here are the steps to {t}:")
OUTROS = ("If you see `{e}`, make sure the {n} exists and you have permission to {v} it.",
          "**Note:** this {v}s the {n} in place, so keep a backup first.",
          "Let me know if you want a version that also handles the {a} case!",
          "That's it: the {n} should now be {a}.")
TIPS = ("- **Start {a}.** {V} one {n} a day and build from there.",
        "- **Keep a {n}.** Writing things down makes it easier to {v} what works.",
        "- Avoid the {a} {n}: it is the most common mistake.",
        "- Set a {a} schedule and {v} it every {d}.",
        "- Ask for feedback early; a {a} {n} beats a perfect one that never ships.",
        "- Be patient: most people see results after a few weeks.")


def _chat_turns(rng: random.Random) -> str:
    style = rng.randint(0, 2)
    people = rng.sample(NAMES_FOR_CHAT, rng.randint(2, 3))
    t = _time(rng)
    lines = []
    for _ in range(rng.randint(1, 6)):
        text = _fill(rng, rng.choice(CHAT_LINES), rng.choice(SERVICES))
        if rng.random() < 0.15:
            text = text.capitalize() + rng.choice(("", ".", "!", " :)"))
        who = rng.choice(people)
        t += timedelta(seconds=rng.randint(5, 600))
        lines.append((text, f"{who}: {text}", f"[{t:%H:%M}] {who}: {text}")[style])
    return "\n".join(lines)


def _answer_howto(rng: random.Random) -> str:
    c = rng.choice
    task, cmds = c(TASKS)
    mark = c(("num", "-", "*"))
    steps = []
    for i, cmd in enumerate(rng.sample(cmds, rng.randint(2, len(cmds))), 1):
        lead = c(("Run", "Use", "Try", "Then run", "Check with"))
        tail = c(("", f" to {c(VERBS)} the {c(NOUNS)}", " (this is safe to repeat)",
                  f"; it prints the {c(ADJS)} {c(NOUNS)}s", ""))
        bold = f"**{c(VERBS).title()}**: " if rng.random() < 0.3 else ""
        steps.append(f"{f'{i}.' if mark == 'num' else mark} {bold}{lead} `{cmd}`{tail}.")
    parts = [c(INTROS).format(t=task), "\n".join(steps)]
    if rng.random() < 0.35:
        parts.append(f"```{c(('bash', 'python', 'sh', ''))}\n" + "\n".join(rng.sample(cmds, 2)) + "\n```")
    if rng.random() < 0.7:
        parts.append(c(OUTROS).format(e=c(ERRORS), n=c(NOUNS), v=c(VERBS), a=c(ADJS)))
    return "\n\n".join(parts)


def _answer_advice(rng: random.Random) -> str:
    c = rng.choice
    topic = c(TOPICS)
    head = c(("## Tips for {t}", "### {T}: a quick guide", "Here are a few ideas for {t}:",
              "Great question! A few things help with {t}:")).format(t=topic, T=topic.capitalize())
    tips = [c(TIPS).format(a=c(ADJS), n=c(NOUNS), v=c(VERBS), V=c(VERBS).title(),
                           d=c(("morning", "week", "evening", "weekend")))
            for _ in range(rng.randint(2, 5))]
    outro = c(("Would you like a more detailed plan?", "Hope this helps!",
               f"The key is consistency, not a {c(ADJS)} start.", ""))
    return "\n\n".join(p for p in (head, "\n".join(tips), outro) if p)


def _answer_compare(rng: random.Random) -> str:
    c = rng.choice
    a, b = rng.sample(NOUNS, 2)
    cost = ("low", "medium", "high")
    return (f"The main difference between a **{a}** and a **{b}** is "
            f"{c(('scope', 'lifetime', 'cost', 'ownership'))}: a {a} is usually {c(ADJS)} and tied to one "
            f"`{c(NOUNS)}_id`, while a {b} is {c(ADJS)} and can be shared across {c(NOUNS)}s.\n\n"
            f"| | {a} | {b} |\n|---|---|---|\n| {c(ADJS)} | yes | no |\n| cost | {c(cost)} | {c(cost)} |\n\n"
            f"In short: use a {a} when you need to {c(VERBS)} things quickly, and a {b} when you need to "
            f"{c(VERBS)} them safely.")


def chat(seed: int = SEED) -> Iterator[str]:
    """Chat turns (plain, named, or timed) and answer-like Markdown paragraphs, about half each."""
    rng = rng_for(f"synthetic/chat/{seed}")
    while True:
        kind = rng.choices((_chat_turns, _answer_howto, _answer_advice, _answer_compare), (10, 5, 3, 2))[0]
        yield from _fit(kind(rng))


GENERATORS: dict[str, Callable[[int], Iterator[str]]] = {"logs": logs, "records": records, "chat": chat}
