/* The per-packet work of packet forwarding, in C: SRTP unprotect + RTP header parse on the way in, RTP header
 * build + SRTP protect + sendto on the way out. Control stays in Python (gateway/media/fastpath.py).
 *
 * SRTP is done with the very libsrtp session objects that aiortc created through pylibsrtp (their srtp_t and the
 * srtp_protect/srtp_unprotect entry points of pylibsrtp's bundled libsrtp are handed in as addresses), so one SRTP
 * context per direction keeps its rollover counter and replay window whichever path a packet takes. No libsrtp
 * headers are needed to build this module: only a C compiler and Python's headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

#define BUFFER 2048   /* a datagram (<= 1500 bytes) plus the SRTP trailer */
#define TRAILER 144   /* SRTP_MAX_TRAILER_LEN */

static PyObject *SrtpError;
static PyTypeObject RouteType;

typedef struct {
    int pt, marker, cc, padding, pos, len;  /* the payload is buf[pos, len - padding) */
    unsigned seq;
    uint32_t ts, ssrc;
    long abs_send_time;                     /* -1: none */
    int audio;                              /* the audio level byte, -1: none */
    const uint8_t *mid;
    int mid_len;
} Parsed;

/* Parse an (unprotected) RTP packet: 0, or -1 when malformed. */
static int parse_rtp(const uint8_t *buf, int len, int mid_id, int abs_id, int audio_id, Parsed *out) {
    if (len < 12 || (buf[0] >> 6) != 2)
        return -1;
    int padding_bit = buf[0] & 0x20, ext_bit = buf[0] & 0x10, cc = buf[0] & 0x0F;
    out->marker = buf[1] >> 7;
    out->pt = buf[1] & 0x7F;
    out->cc = cc;
    out->seq = (buf[2] << 8) | buf[3];
    out->ts = ((uint32_t)buf[4] << 24) | ((uint32_t)buf[5] << 16) | ((uint32_t)buf[6] << 8) | buf[7];
    out->ssrc = ((uint32_t)buf[8] << 24) | ((uint32_t)buf[9] << 16) | ((uint32_t)buf[10] << 8) | buf[11];
    out->abs_send_time = -1;
    out->audio = -1;
    out->mid = NULL;
    out->mid_len = 0;
    out->len = len;
    int pos = 12 + 4 * cc;
    if (pos > len)
        return -1;
    if (ext_bit) {
        if (pos + 4 > len)
            return -1;
        unsigned profile = (buf[pos] << 8) | buf[pos + 1];
        int ext_len = 4 * ((buf[pos + 2] << 8) | buf[pos + 3]);
        pos += 4;
        if (pos + ext_len > len)
            return -1;
        int p = pos, end = pos + ext_len;
        while (p < end) {
            int id, n;
            if (profile == 0xBEDE) {
                if (buf[p] == 0) { p++; continue; }  /* padding */
                id = buf[p] >> 4;
                n = (buf[p] & 0x0F) + 1;
                if (id == 15) break;
                p += 1;
            } else if ((profile & 0xFFF0) == 0x1000) {
                if (buf[p] == 0) { p++; continue; }
                if (p + 2 > end) break;
                id = buf[p];
                n = buf[p + 1];
                p += 2;
            } else {
                break;
            }
            if (p + n > end) break;
            if (id == abs_id && n == 3)
                out->abs_send_time = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2];
            else if (id == audio_id && n >= 1)
                out->audio = buf[p];
            else if (id == mid_id && n >= 1) {
                out->mid = buf + p;
                out->mid_len = n;
            }
            p += n;
        }
        pos = end;
    }
    out->padding = 0;
    if (padding_bit) {
        out->padding = buf[len - 1];
        if (out->padding == 0 || pos + out->padding > len)
            return -1;
    }
    out->pos = pos;
    return 0;
}

/* The fields tuple of unprotect_parse (see there); `payload` is the payload as bytes if already made, else NULL. */
static PyObject *parsed_tuple(const uint8_t *buf, const Parsed *f, PyObject *payload) {
    PyObject *abs = f->abs_send_time >= 0 ? PyLong_FromLong(f->abs_send_time) : (Py_INCREF(Py_None), Py_None);
    PyObject *level = f->audio >= 0 ? Py_BuildValue("(Oi)", (f->audio & 0x80) ? Py_True : Py_False, f->audio & 0x7F)
                                    : (Py_INCREF(Py_None), Py_None);
    PyObject *mid_obj = f->mid != NULL ? PyUnicode_DecodeASCII((const char *)f->mid, f->mid_len, "replace")
                                       : (Py_INCREF(Py_None), Py_None);
    PyObject *result = NULL;
    if (abs && level && mid_obj) {
        if (payload != NULL)
            result = Py_BuildValue("(iiIkkOiiOOO)", f->pt, f->marker, f->seq, (unsigned long)f->ts,
                                   (unsigned long)f->ssrc, payload, f->padding, f->cc, abs, level, mid_obj);
        else
            result = Py_BuildValue("(iiIkky#iiOOO)", f->pt, f->marker, f->seq, (unsigned long)f->ts,
                                   (unsigned long)f->ssrc, buf + f->pos, (Py_ssize_t)(f->len - f->pos - f->padding),
                                   f->padding, f->cc, abs, level, mid_obj);
    }
    Py_XDECREF(abs);
    Py_XDECREF(level);
    Py_XDECREF(mid_obj);
    return result;
}

/* unprotect_parse(unprotect_fn, ctx, data, mid_id, abs_id, audio_id)
 * -> (payload_type, marker, seq, ts, ssrc, payload, padding, csrc_count, abs_send_time|None,
 *     audio_level (vad, level)|None, mid str|None)
 * or an int: libsrtp's error code (authentication/replay failure), or -1 for a malformed packet. */
static PyObject *unprotect_parse(PyObject *self, PyObject *args) {
    unsigned long long fn, ctx;
    Py_buffer data;
    int mid_id, abs_id, audio_id;
    if (!PyArg_ParseTuple(args, "KKy*iii", &fn, &ctx, &data, &mid_id, &abs_id, &audio_id))
        return NULL;
    uint8_t buf[BUFFER];
    int len = (int)data.len;
    if (len < 12 || len > BUFFER - TRAILER) {
        PyBuffer_Release(&data);
        return PyLong_FromLong(-1);
    }
    memcpy(buf, data.buf, len);
    PyBuffer_Release(&data);
    int err = ((srtp_fn)(uintptr_t)fn)((void *)(uintptr_t)ctx, buf, &len);
    if (err)
        return PyLong_FromLong(err);
    Parsed f;
    if (parse_rtp(buf, len, mid_id, abs_id, audio_id, &f) < 0)
        return PyLong_FromLong(-1);
    return parsed_tuple(buf, &f, NULL);
}

static int put_addr(PyObject *host, int port, struct sockaddr_storage *ss, socklen_t *sl) {
    const char *h = PyUnicode_AsUTF8(host);
    if (h == NULL)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (strchr(h, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, h, &a->sin6_addr) != 1) goto bad;
        *sl = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, h, &a->sin_addr) != 1) goto bad;
        *sl = sizeof(*a);
    }
    return 0;
bad:
    PyErr_Format(PyExc_ValueError, "not a numeric address: %s", h);
    return -1;
}

/* protect_send(protect_fn, ctx, fd, host, port, payload_type, marker, seq, ts, ssrc, payload, padding,
 *              mid_id, mid, abs_id, abs_send_time, audio_id, audio_level)
 * Builds the RTP packet (one-byte header extensions: MID, abs-send-time, audio level; an id of 0 leaves one out),
 * protects it and sends it. Returns the number of bytes sent, or the protected packet (bytes) when the socket
 * would block, for the caller to queue; raises SrtpError when libsrtp refuses. */
static PyObject *protect_send(PyObject *self, PyObject *args) {
    unsigned long long fn, ctx;
    int fd, port, pt, marker, padding, mid_id, abs_id, audio_id, audio_level;
    unsigned int seq;
    unsigned long ts, ssrc;
    long abs_send_time;
    PyObject *host;
    Py_buffer payload, mid;
    if (!PyArg_ParseTuple(args, "KKiUiiiIkky*iiy*ilii", &fn, &ctx, &fd, &host, &port, &pt, &marker, &seq, &ts,
                          &ssrc, &payload, &padding, &mid_id, &mid, &abs_id, &abs_send_time, &audio_id,
                          &audio_level))
        return NULL;
    uint8_t buf[BUFFER];
    PyObject *result = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    if (put_addr(host, port, &ss, &sl) < 0)
        goto done;
    if (padding < 0 || padding > 255 || mid.len > 16) {
        PyErr_SetString(PyExc_ValueError, "bad padding or MID");
        goto done;
    }
    int has_ext = (mid_id > 0 && mid.len > 0) || abs_id > 0 || (audio_id > 0 && audio_level >= 0);
    buf[0] = 0x80 | (padding ? 0x20 : 0) | (has_ext ? 0x10 : 0);
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7F));
    buf[2] = (uint8_t)(seq >> 8); buf[3] = (uint8_t)seq;
    buf[4] = (uint8_t)(ts >> 24); buf[5] = (uint8_t)(ts >> 16); buf[6] = (uint8_t)(ts >> 8); buf[7] = (uint8_t)ts;
    buf[8] = (uint8_t)(ssrc >> 24); buf[9] = (uint8_t)(ssrc >> 16); buf[10] = (uint8_t)(ssrc >> 8);
    buf[11] = (uint8_t)ssrc;
    int pos = 12;
    if (has_ext) {
        int start = pos + 4, p = start;
        if (mid_id > 0 && mid.len > 0) {
            buf[p++] = (uint8_t)((mid_id << 4) | (mid.len - 1));
            memcpy(buf + p, mid.buf, mid.len);
            p += (int)mid.len;
        }
        if (abs_id > 0) {
            buf[p++] = (uint8_t)((abs_id << 4) | 2);
            buf[p++] = (uint8_t)(abs_send_time >> 16); buf[p++] = (uint8_t)(abs_send_time >> 8);
            buf[p++] = (uint8_t)abs_send_time;
        }
        if (audio_id > 0 && audio_level >= 0) {
            buf[p++] = (uint8_t)(audio_id << 4);
            buf[p++] = (uint8_t)audio_level;
        }
        while ((p - start) % 4) buf[p++] = 0;
        int words = (p - start) / 4;
        buf[pos] = 0xBE; buf[pos + 1] = 0xDE; buf[pos + 2] = (uint8_t)(words >> 8); buf[pos + 3] = (uint8_t)words;
        pos = p;
    }
    if (pos + payload.len + padding > BUFFER - TRAILER) {
        PyErr_SetString(PyExc_ValueError, "packet too long");
        goto done;
    }
    memcpy(buf + pos, payload.buf, payload.len);
    pos += (int)payload.len;
    if (padding) {
        memset(buf + pos, 0, padding - 1);
        buf[pos + padding - 1] = (uint8_t)padding;
        pos += padding;
    }
    int len = pos;
    int err = ((srtp_fn)(uintptr_t)fn)((void *)(uintptr_t)ctx, buf, &len);
    if (err) {
        PyErr_Format(SrtpError, "srtp_protect failed: %d", err);
        goto done;
    }
    ssize_t sent = sendto(fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&ss, sl);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            result = PyBytes_FromStringAndSize((const char *)buf, len);
        else
            result = PyLong_FromLong(-errno);  /* as asyncio does for a datagram: the packet is lost, logged above */
    } else {
        result = PyLong_FromSsize_t(sent);
    }
done:
    PyBuffer_Release(&payload);
    PyBuffer_Release(&mid);
    return result;
}


/* ---------------------------------------------------------------------------------------------------------------
 * Route: one outgoing stream's steady-state forwarding, in C. Python (packets.RtpForwarder) arms it once the stream
 * runs steadily (leg up, source known, no keyframe wait, nothing buffered by asyncio) with its rewrite state (SSRC,
 * payload type, sequence and timestamp offsets, the keyframe-resume window); from then on `fanout` rewrites, protects
 * and sends each packet of the source for every armed route in one call, keeps the NACK history and the sender-report
 * counters, and hands a route back to Python (disarmed) when the source stream changes or the socket would block.
 * Python syncs the counters into aiortc's sender when a route asks (every SYNC_PACKETS packets or SYNC_NS). */

#define HISTORY 128       /* aiortc's RTP_HISTORY_SIZE: NACKs are answered from seq % HISTORY */
#define RESUME_WINDOW 1000
#define SYNC_PACKETS 32
#define SYNC_NS 100000000LL

enum { ATTEND_SYNC = 1, ATTEND_BLOCKED = 2, ATTEND_SOURCE = 3 };

typedef struct {
    PyObject *payload;  /* NULL: empty slot */
    uint16_t seq;
    uint32_t ts;
    uint32_t abs_send_time;
    uint8_t marker, padding;
    int16_t level;       /* -1: none */
} Sent;

typedef struct {
    PyObject_HEAD
    srtp_fn protect;
    void *ctx;
    int fd;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint32_t ssrc;
    int pt, mid_id, abs_id, audio_id, mid_len;
    uint8_t mid[16];
    int armed, attend;
    uint32_t source, ts_offset, last_ts;
    uint16_t seq_offset, last_seq, resume_seq;
    int resume_active, since_resume;
    long long last_ns;                       /* CLOCK_MONOTONIC of the newest packet sent */
    /* since the last take_counters() */
    unsigned long long sent, payload_bytes, wire_bytes;
    int since_sync;
    long long synced_ns, packet_ns;  /* the last hand-over to Python; the last packet counted */
    uint64_t ntp;
    uint32_t rtp_ts;
    PyObject *pending;                       /* protected bytes that would have blocked, for asyncio to queue */
    Sent history[HISTORY];
} Route;

static long long mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static uint64_t ntp_now(void) {  /* 32.32 fixed point, as aiortc's clock.current_ntp_time() */
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t seconds = (uint64_t)t.tv_sec + 2208988800ULL;
    return (seconds << 32) | (uint64_t)(((uint64_t)t.tv_nsec << 32) / 1000000000ULL);
}

static int seq_gt(uint16_t a, uint16_t b) {  /* aiortc's uint16_gt */
    return (a > b && (uint16_t)(a - b) < 0x8000) || (a < b && (uint16_t)(b - a) > 0x8000);
}

static void route_clear_history(Route *r) {
    for (int i = 0; i < HISTORY; i++)
        Py_CLEAR(r->history[i].payload);
}

static PyObject *route_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long fn;
    if (!PyArg_ParseTuple(args, "K", &fn))
        return NULL;
    Route *r = (Route *)type->tp_alloc(type, 0);
    if (r == NULL)
        return NULL;
    r->protect = (srtp_fn)(uintptr_t)fn;
    r->fd = -1;
    return (PyObject *)r;
}

static void route_close_fd(Route *r) {
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

static void route_dealloc(Route *r) {
    route_close_fd(r);
    route_clear_history(r);
    Py_CLEAR(r->pending);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

/* connect(ctx, fd, host, port, ssrc, payload_type, mid_id, mid, abs_id, audio_id): where and how to send. The route
 * sends on its own duplicate of `fd`, so a socket closed by asyncio can never leave it writing to a reused number. */
static PyObject *route_connect(Route *r, PyObject *args) {
    unsigned long long ctx;
    int fd, port, pt, mid_id, abs_id, audio_id;
    unsigned long ssrc;
    PyObject *host;
    Py_buffer mid;
    if (!PyArg_ParseTuple(args, "KiUikiiy*ii", &ctx, &fd, &host, &port, &ssrc, &pt, &mid_id, &mid, &abs_id,
                          &audio_id))
        return NULL;
    if (mid.len > 16) {
        PyBuffer_Release(&mid);
        PyErr_SetString(PyExc_ValueError, "MID longer than 16 bytes");
        return NULL;
    }
    if (put_addr(host, port, &r->addr, &r->addr_len) < 0) {
        PyBuffer_Release(&mid);
        return NULL;
    }
    int own = dup(fd);
    if (own < 0) {
        PyBuffer_Release(&mid);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    route_close_fd(r);
    r->ctx = (void *)(uintptr_t)ctx;
    r->fd = own;
    r->ssrc = (uint32_t)ssrc;
    r->pt = pt & 0x7F;
    r->mid_id = mid_id;
    r->abs_id = abs_id;
    r->audio_id = audio_id;
    r->mid_len = (int)mid.len;
    memcpy(r->mid, mid.buf, mid.len);
    PyBuffer_Release(&mid);
    Py_RETURN_NONE;
}

/* arm(source, seq_offset, ts_offset, last_seq, last_ts, resume_seq (-1: none), since_resume) */
static PyObject *route_arm(Route *r, PyObject *args) {
    unsigned long source, ts_offset, last_ts;
    unsigned int seq_offset, last_seq;
    int resume_seq, since_resume;
    if (!PyArg_ParseTuple(args, "kIkIkii", &source, &seq_offset, &ts_offset, &last_seq, &last_ts, &resume_seq,
                          &since_resume))
        return NULL;
    if (r->fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "route not connected");
        return NULL;
    }
    r->source = (uint32_t)source;
    r->seq_offset = (uint16_t)seq_offset;
    r->ts_offset = (uint32_t)ts_offset;
    r->last_seq = (uint16_t)last_seq;
    r->last_ts = (uint32_t)last_ts;
    r->resume_active = resume_seq >= 0;
    r->resume_seq = (uint16_t)(resume_seq < 0 ? 0 : resume_seq);
    r->since_resume = since_resume;
    r->last_ns = 0;
    r->attend = 0;
    r->since_sync = 0;
    r->synced_ns = mono_ns();
    r->armed = 1;
    Py_RETURN_NONE;
}

/* disarm() -> (last_seq, last_ts, seconds since the newest packet sent here or None, resume_seq or -1,
 * since_resume): the rewrite state, back to Python. */
static PyObject *route_disarm(Route *r, PyObject *unused) {
    r->armed = 0;
    PyObject *age = r->last_ns ? PyFloat_FromDouble((mono_ns() - r->last_ns) / 1e9) : (Py_INCREF(Py_None), Py_None);
    if (age == NULL)
        return NULL;
    return Py_BuildValue("(IkNii)", (unsigned)r->last_seq, (unsigned long)r->last_ts, age,
                         r->resume_active ? (int)r->resume_seq : -1, r->since_resume);
}

/* take_counters() -> (packets, payload bytes, bytes on the wire, ntp, rtp timestamp) since the last call. */
static PyObject *route_take_counters(Route *r, PyObject *unused) {
    PyObject *result = Py_BuildValue("(KKKKk)", r->sent, r->payload_bytes, r->wire_bytes, (unsigned long long)r->ntp,
                                     (unsigned long)r->rtp_ts);
    r->sent = r->payload_bytes = r->wire_bytes = 0;
    r->since_sync = 0;
    r->synced_ns = mono_ns();
    r->attend = 0;
    return result;
}

static PyObject *route_take_pending(Route *r, PyObject *unused) {
    PyObject *pending = r->pending;
    r->pending = NULL;
    if (pending == NULL)
        Py_RETURN_NONE;
    return pending;
}

/* history(index) -> (marker, seq, ts, payload, padding, audio level byte or -1, abs_send_time) or None */
static PyObject *route_history(Route *r, PyObject *arg) {
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i < 0 || i >= HISTORY || r->history[i].payload == NULL)
        Py_RETURN_NONE;
    Sent *s = &r->history[i];
    return Py_BuildValue("(iIkOiik)", s->marker, (unsigned)s->seq, (unsigned long)s->ts, s->payload, s->padding,
                         (int)s->level, (unsigned long)s->abs_send_time);
}

/* forget(index): a packet sent another way took this history slot. */
static PyObject *route_forget(Route *r, PyObject *arg) {
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    if (i >= 0 && i < HISTORY)
        Py_CLEAR(r->history[i].payload);
    Py_RETURN_NONE;
}

/* close(): disarmed for good, its socket duplicate closed and its history emptied (the stream stopped). */
static PyObject *route_close(Route *r, PyObject *unused) {
    r->armed = 0;
    route_close_fd(r);
    route_clear_history(r);
    Py_CLEAR(r->pending);
    Py_RETURN_NONE;
}

static PyObject *route_get_armed(Route *r, void *unused) { return PyBool_FromLong(r->armed); }
static PyObject *route_get_attend(Route *r, void *unused) { return PyLong_FromLong(r->attend); }

/* One packet of the source on one armed route. Returns 0 (sent or dropped here) or an ATTEND_ reason. */
static int route_send(Route *r, uint32_t ssrc, uint16_t seq_in, uint32_t ts_in, int marker, PyObject *payload,
                      const uint8_t *data, Py_ssize_t data_len, int padding, int level, long long now_ns) {
    if (ssrc != r->source) {
        r->armed = 0;
        return ATTEND_SOURCE;
    }
    if (r->resume_active) {
        if (seq_gt(r->resume_seq, seq_in))
            return 0;  /* late packet from before the resume point: never announced downstream */
        if (++r->since_resume > RESUME_WINDOW)
            r->resume_active = 0;
    }
    uint16_t seq = (uint16_t)(seq_in + r->seq_offset);
    uint32_t ts = ts_in + r->ts_offset;
    uint64_t ntp = ntp_now();
    uint32_t abs_send_time = (uint32_t)((ntp >> 14) & 0x00FFFFFF);
    uint8_t buf[BUFFER];
    int has_ext = (r->mid_id > 0 && r->mid_len > 0) || r->abs_id > 0 || (r->audio_id > 0 && level >= 0);
    buf[0] = 0x80 | (padding ? 0x20 : 0) | (has_ext ? 0x10 : 0);
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | r->pt);
    buf[2] = (uint8_t)(seq >> 8); buf[3] = (uint8_t)seq;
    buf[4] = (uint8_t)(ts >> 24); buf[5] = (uint8_t)(ts >> 16); buf[6] = (uint8_t)(ts >> 8); buf[7] = (uint8_t)ts;
    buf[8] = (uint8_t)(r->ssrc >> 24); buf[9] = (uint8_t)(r->ssrc >> 16); buf[10] = (uint8_t)(r->ssrc >> 8);
    buf[11] = (uint8_t)r->ssrc;
    int pos = 12;
    if (has_ext) {
        int start = pos + 4, p = start;
        if (r->mid_id > 0 && r->mid_len > 0) {
            buf[p++] = (uint8_t)((r->mid_id << 4) | (r->mid_len - 1));
            memcpy(buf + p, r->mid, r->mid_len);
            p += r->mid_len;
        }
        if (r->abs_id > 0) {
            buf[p++] = (uint8_t)((r->abs_id << 4) | 2);
            buf[p++] = (uint8_t)(abs_send_time >> 16); buf[p++] = (uint8_t)(abs_send_time >> 8);
            buf[p++] = (uint8_t)abs_send_time;
        }
        if (r->audio_id > 0 && level >= 0) {
            buf[p++] = (uint8_t)(r->audio_id << 4);
            buf[p++] = (uint8_t)level;
        }
        while ((p - start) % 4) buf[p++] = 0;
        int words = (p - start) / 4;
        buf[pos] = 0xBE; buf[pos + 1] = 0xDE; buf[pos + 2] = (uint8_t)(words >> 8); buf[pos + 3] = (uint8_t)words;
        pos = p;
    }
    if (pos + data_len + padding > BUFFER - TRAILER)
        return 0;  /* cannot happen for a datagram that came in; dropped */
    memcpy(buf + pos, data, data_len);
    pos += (int)data_len;
    if (padding) {
        memset(buf + pos, 0, padding - 1);
        buf[pos + padding - 1] = (uint8_t)padding;
        pos += padding;
    }
    int len = pos;
    if (r->protect(r->ctx, buf, &len) != 0)
        return 0;  /* libsrtp refused (key limit): lost, as aiortc would lose it */
    /* Kept for NACKs whatever the socket says (a packet asyncio queues is sent too). */
    Sent *slot = &r->history[seq % HISTORY];
    Py_INCREF(payload);
    Py_XSETREF(slot->payload, payload);
    slot->seq = seq; slot->ts = ts; slot->marker = (uint8_t)marker; slot->padding = (uint8_t)padding;
    slot->level = (int16_t)level; slot->abs_send_time = abs_send_time;
    if (seq_gt(seq, r->last_seq) || r->last_ns == 0) {
        r->last_seq = seq;
        r->last_ts = ts;
        r->last_ns = now_ns;
    }
    r->sent++;
    r->payload_bytes += (unsigned long long)data_len;
    r->ntp = ntp;
    r->rtp_ts = ts;
    ssize_t sent = sendto(r->fd, buf, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&r->addr, r->addr_len);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
        Py_XSETREF(r->pending, PyBytes_FromStringAndSize((const char *)buf, len));
        if (r->pending == NULL)
            PyErr_Clear();
        r->wire_bytes += (unsigned long long)len;
        r->armed = 0;
        return ATTEND_BLOCKED;
    }
    if (sent > 0)
        r->wire_bytes += (unsigned long long)sent;
    if (++r->since_sync >= SYNC_PACKETS || now_ns - r->synced_ns >= SYNC_NS)
        return ATTEND_SYNC;
    return 0;
}

/* Every armed route of `routes` (a tuple, checked) sends one packet; *attention gets the list of the indexes of the
 * routes that need Python (their `attend` says why), or stays NULL. -1 with an exception set on error. */
static int fanout_routes(PyObject *routes, uint32_t ssrc, uint16_t seq, uint32_t ts, int marker, PyObject *payload,
                         int padding, int level, long long now_ns, PyObject **attention) {
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(payload);
    Py_ssize_t data_len = PyBytes_GET_SIZE(payload);
    Py_ssize_t n = PyTuple_GET_SIZE(routes);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(routes, i);
        if (!PyObject_TypeCheck(item, &RouteType)) {
            Py_CLEAR(*attention);
            PyErr_SetString(PyExc_TypeError, "fanout takes a tuple of Routes");
            return -1;
        }
        Route *r = (Route *)item;
        if (!r->armed)
            continue;
        int why = route_send(r, ssrc, seq, ts, marker, payload, data, data_len, padding, level, now_ns);
        if (why) {
            r->attend = why;
            if (*attention == NULL && (*attention = PyList_New(0)) == NULL)
                return -1;
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(*attention, index) < 0) {
                Py_XDECREF(index);
                Py_CLEAR(*attention);
                return -1;
            }
            Py_DECREF(index);
        }
    }
    return 0;
}

/* fanout(routes, ssrc, seq, ts, marker, payload, padding, audio level byte or -1)
 * -> None, or the list of indexes (into `routes`) of the routes that need Python: their `attend` says why. */
static PyObject *fanout(PyObject *self, PyObject *args) {
    PyObject *routes, *payload;
    unsigned long ssrc, ts;
    unsigned int seq;
    int marker, padding, level;
    if (!PyArg_ParseTuple(args, "O!kIkiSii", &PyTuple_Type, &routes, &ssrc, &seq, &ts, &marker, &payload, &padding,
                          &level))
        return NULL;
    if (padding < 0 || padding > 255) {
        PyErr_SetString(PyExc_ValueError, "bad padding");
        return NULL;
    }
    PyObject *attention = NULL;
    if (fanout_routes(routes, (uint32_t)ssrc, (uint16_t)seq, (uint32_t)ts, marker, payload, padding, level, mono_ns(),
                      &attention) < 0)
        return NULL;
    if (attention == NULL)
        Py_RETURN_NONE;
    return attention;
}

static PyMethodDef route_methods[] = {
    {"connect", (PyCFunction)route_connect, METH_VARARGS, "Set the socket, address, SRTP context and stream ids."},
    {"arm", (PyCFunction)route_arm, METH_VARARGS, "Take over forwarding with this rewrite state."},
    {"disarm", (PyCFunction)route_disarm, METH_NOARGS, "Stop; returns the rewrite state."},
    {"take_counters", (PyCFunction)route_take_counters, METH_NOARGS, "Counters since the last call."},
    {"take_pending", (PyCFunction)route_take_pending, METH_NOARGS, "The packet that would have blocked, or None."},
    {"history", (PyCFunction)route_history, METH_O, "The packet sent in a history slot, or None."},
    {"forget", (PyCFunction)route_forget, METH_O, "Empty a history slot."},
    {"close", (PyCFunction)route_close, METH_NOARGS, "Stop for good: close the socket duplicate, drop the history."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef route_getset[] = {
    {"armed", (getter)route_get_armed, NULL, "whether C forwards this stream", NULL},
    {"attend", (getter)route_get_attend, NULL, "why fanout handed it back: 1 sync, 2 blocked, 3 new source", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RouteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.media._fastpath.Route",
    .tp_basicsize = sizeof(Route),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = route_new,
    .tp_dealloc = (destructor)route_dealloc,
    .tp_methods = route_methods,
    .tp_getset = route_getset,
    .tp_doc = "Route(srtp_protect address): one outgoing stream's steady-state forwarding in C.",
};

/* ---------------------------------------------------------------------------------------------------------------
 * Inlet: the receive side of steady streams, in C. It stands in for the datagram_received of a connected leg's UDP
 * protocols (one Inlet per DTLS transport). A datagram of an incoming stream that Python armed here (its producer's
 * every consumer forwards in C, no tap, no NACK outstanding) is unprotected with aiortc's own libsrtp session,
 * checked to be the next packet in order and not the start of a keyframe, counted into the receive statistics that
 * aiortc's receiver reports use (packets, highest sequence number, cycles, jitter), noted for the REMB estimator,
 * and fanned out to the producer's armed routes before any Python object but its payload is made. Python gets the
 * counters in batches (`owner.sync` every SYNC_PACKETS packets or SYNC_NS, or at once when a route needs it) and
 * the packet itself whenever anything but steady forwarding happens (`owner.release`: a gap, a keyframe, another
 * payload type, a tap), after which the stream is disarmed until Python arms it again. Anything else (SRTCP, DTLS,
 * STUN, streams not armed) goes where it went before: `original` (aioice) or `slow` (Python's direct receive). */

#define INLET_STREAMS 8
#define REMB_MAX 64
#define GOP_MAX 600        /* forward.GOP_CACHE_PACKETS */
#define NTP_OFFSET 2208988800.0
enum { CODEC_OTHER = 0, CODEC_VP8 = 1, CODEC_H264 = 2 };

typedef struct {
    long long arrival_ms;
    uint32_t abs_send_time, size;
} RembInput;

typedef struct {
    int active, video, codec, pt, estimator;
    uint32_t ssrc;
    double clockrate;
    uint16_t max_seq;
    long long jitter_q4, last_arrival;
    uint32_t last_ts;
    /* since the last hand-over to Python */
    unsigned long long taken, wire_bytes;
    long packets, frames, cycles;
    int since_sync;
    long long synced_ns, packet_ns;  /* the last hand-over to Python; the last packet counted */
    int remb_n;
    RembInput remb[REMB_MAX];
    PyObject *owner, *routes, *gop, *taps;
} Stream;

typedef struct {
    PyObject_HEAD
    srtp_fn unprotect;
    void *ctx;
    PyObject *dtls, *session, *connected, *original, *slow;
    int mid_id, abs_id, audio_id;
    Stream streams[INLET_STREAMS];
} Inlet;

static PyObject *str_rx_srtp, *str_state, *str_sync, *str_release;

static int vp8_descriptor_length(const uint8_t *p, Py_ssize_t n) {  /* codecs._vp8_descriptor_length */
    if (n <= 0)
        return 0;
    Py_ssize_t length = 1;
    if (p[0] & 0x80) {
        if (n < 2)
            return 0;
        uint8_t ext = p[1];
        length = 2;
        if (ext & 0x80) {
            if (n <= length)
                return 0;
            length += (p[length] & 0x80) ? 2 : 1;
        }
        if (ext & 0x40)
            length += 1;
        if (ext & 0x30)
            length += 1;
    }
    return length < n ? (int)length : 0;
}

static int keyframe_start(int codec, const uint8_t *p, Py_ssize_t n) {  /* codecs.is_keyframe_start */
    if (codec == CODEC_VP8) {
        if (n == 0 || !(p[0] & 0x10) || (p[0] & 0x07) != 0)
            return 0;
        int offset = vp8_descriptor_length(p, n);
        return offset > 0 && (p[offset] & 0x01) == 0;
    }
    if (codec == CODEC_H264) {
        if (n == 0)
            return 0;
        int nal = p[0] & 0x1F;
        if (nal == 5 || nal == 7)
            return 1;
        if (nal == 24) {
            Py_ssize_t pos = 1;
            while (pos + 2 < n) {
                int size = (p[pos] << 8) | p[pos + 1];
                if ((p[pos + 2] & 0x1F) == 5 || (p[pos + 2] & 0x1F) == 7)
                    return 1;
                pos += 2 + size;
            }
            return 0;
        }
        if (nal == 28 && n > 1)
            return (p[1] & 0x80) && (p[1] & 0x1F) == 5;
        return 0;
    }
    return 1;
}

static double real_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void stream_clear(Stream *s) {
    s->active = 0;
    Py_CLEAR(s->owner);
    Py_CLEAR(s->routes);
    Py_CLEAR(s->gop);
    Py_CLEAR(s->taps);
}

/* The counters since the last hand-over, reset: (datagrams taken, their bytes, packets, frames, highest sequence
 * number, cycles to add, jitter_q4, last arrival, last timestamp, REMB inputs as bytes of "<qII" records or None). */
static PyObject *stream_take(Stream *s) {
    PyObject *remb;
    if (s->remb_n) {
        remb = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)s->remb_n * 16);
        if (remb == NULL)
            return NULL;
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(remb);
        for (int i = 0; i < s->remb_n; i++) {  /* little-endian, as struct's "<qII" */
            uint64_t a = (uint64_t)s->remb[i].arrival_ms;
            for (int k = 0; k < 8; k++)
                out[16 * i + k] = (uint8_t)(a >> (8 * k));
            for (int k = 0; k < 4; k++) {
                out[16 * i + 8 + k] = (uint8_t)(s->remb[i].abs_send_time >> (8 * k));
                out[16 * i + 12 + k] = (uint8_t)(s->remb[i].size >> (8 * k));
            }
        }
    } else {
        remb = Py_None;
        Py_INCREF(remb);
    }
    PyObject *state = Py_BuildValue("(KKllIlLLkN)", s->taken, s->wire_bytes, s->packets, s->frames,
                                    (unsigned)s->max_seq, s->cycles, s->jitter_q4, s->last_arrival,
                                    (unsigned long)s->last_ts, remb);
    if (state == NULL)
        return NULL;
    s->taken = s->wire_bytes = 0;
    s->packets = s->frames = s->cycles = 0;
    s->remb_n = 0;
    s->since_sync = 0;
    s->synced_ns = mono_ns();
    return state;
}

static PyObject *inlet_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long fn;
    PyObject *dtls, *connected, *original, *slow;
    int mid_id, abs_id, audio_id;
    if (!PyArg_ParseTuple(args, "KOOOOiii", &fn, &dtls, &connected, &original, &slow, &mid_id, &abs_id, &audio_id))
        return NULL;
    if (!PyCallable_Check(original) || !PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "original and slow must be callable");
        return NULL;
    }
    Inlet *self = (Inlet *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->unprotect = (srtp_fn)(uintptr_t)fn;
    Py_INCREF(dtls); self->dtls = dtls;
    Py_INCREF(connected); self->connected = connected;
    Py_INCREF(original); self->original = original;
    Py_INCREF(slow); self->slow = slow;
    self->mid_id = mid_id;
    self->abs_id = abs_id;
    self->audio_id = audio_id;
    return (PyObject *)self;
}

static int inlet_traverse(Inlet *self, visitproc visit, void *arg) {
    Py_VISIT(self->dtls);
    Py_VISIT(self->session);
    Py_VISIT(self->connected);
    Py_VISIT(self->original);
    Py_VISIT(self->slow);
    for (int i = 0; i < INLET_STREAMS; i++) {
        Py_VISIT(self->streams[i].owner);
        Py_VISIT(self->streams[i].routes);
        Py_VISIT(self->streams[i].gop);
        Py_VISIT(self->streams[i].taps);
    }
    return 0;
}

static int inlet_clear(Inlet *self) {
    Py_CLEAR(self->dtls);
    Py_CLEAR(self->session);
    Py_CLEAR(self->connected);
    Py_CLEAR(self->original);
    Py_CLEAR(self->slow);
    for (int i = 0; i < INLET_STREAMS; i++)
        stream_clear(&self->streams[i]);
    return 0;
}

static void inlet_dealloc(Inlet *self) {
    PyObject_GC_UnTrack(self);
    inlet_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Stream *inlet_find(Inlet *self, uint32_t ssrc) {
    for (int i = 0; i < INLET_STREAMS; i++)
        if (self->streams[i].active && self->streams[i].ssrc == ssrc)
            return &self->streams[i];
    return NULL;
}

/* arm(ssrc, owner, session, ctx, payload_type, video, codec (0 other, 1 VP8, 2 H264), clock rate, estimator,
 *     max_seq, jitter_q4, last_arrival, last_timestamp, routes, gop list or None, taps list, mid_id, abs_id,
 *     audio_id) -> bool (False: no free slot). The extension ids are the transport's, as configured now. */
static PyObject *inlet_arm(Inlet *self, PyObject *args) {
    unsigned long ssrc, last_ts;
    PyObject *owner, *session, *routes, *gop, *taps;
    unsigned long long ctx;
    int pt, video, codec, estimator;
    unsigned int max_seq;
    double clockrate;
    long long jitter_q4, last_arrival;
    int mid_id, abs_id, audio_id;
    if (!PyArg_ParseTuple(args, "kOOKiiidiILLkO!OO!iii", &ssrc, &owner, &session, &ctx, &pt, &video, &codec,
                          &clockrate, &estimator, &max_seq, &jitter_q4, &last_arrival, &last_ts, &PyTuple_Type,
                          &routes, &gop, &PyList_Type, &taps, &mid_id, &abs_id, &audio_id))
        return NULL;
    if (gop != Py_None && !PyList_Check(gop)) {
        PyErr_SetString(PyExc_TypeError, "gop must be a list or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(routes); i++)
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(routes, i), &RouteType)) {
            PyErr_SetString(PyExc_TypeError, "routes must be a tuple of Routes");
            return NULL;
        }
    if (video && codec == CODEC_OTHER) {
        PyErr_SetString(PyExc_ValueError, "a video stream needs a codec whose keyframes C can tell");
        return NULL;
    }
    Stream *s = inlet_find(self, (uint32_t)ssrc);
    if (s == NULL)
        for (int i = 0; i < INLET_STREAMS && s == NULL; i++)
            if (!self->streams[i].active)
                s = &self->streams[i];
    if (s == NULL)
        Py_RETURN_FALSE;
    stream_clear(s);
    memset(s, 0, sizeof(*s));
    Py_INCREF(session);
    Py_XSETREF(self->session, session);
    self->ctx = (void *)(uintptr_t)ctx;
    self->mid_id = mid_id;
    self->abs_id = abs_id;
    self->audio_id = audio_id;
    s->ssrc = (uint32_t)ssrc;
    s->pt = pt & 0x7F;
    s->video = video;
    s->codec = codec;
    s->clockrate = clockrate;
    s->estimator = estimator;
    s->max_seq = (uint16_t)max_seq;
    s->jitter_q4 = jitter_q4;
    s->last_arrival = last_arrival;
    s->last_ts = (uint32_t)last_ts;
    s->synced_ns = mono_ns();
    Py_INCREF(owner); s->owner = owner;
    Py_INCREF(routes); s->routes = routes;
    if (gop != Py_None) {
        Py_INCREF(gop);
        s->gop = gop;
    }
    Py_INCREF(taps); s->taps = taps;
    s->active = 1;
    Py_RETURN_TRUE;
}

/* The armed stream named by the ssrc argument of disarm/take: 0 with *out set (NULL when that ssrc is not armed),
 * or -1 with the Python error set when the argument is not an unsigned int. */
static int inlet_arg_stream(Inlet *self, PyObject *arg, Stream **out) {
    unsigned long ssrc = PyLong_AsUnsignedLong(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    *out = inlet_find(self, (uint32_t)ssrc);
    return 0;
}

/* disarm(ssrc) -> the counters since the last hand-over (see stream_take), or None when not armed. */
static PyObject *inlet_disarm(Inlet *self, PyObject *arg) {
    Stream *s;
    if (inlet_arg_stream(self, arg, &s) < 0)
        return NULL;
    if (s == NULL)
        Py_RETURN_NONE;
    PyObject *state = stream_take(s);
    stream_clear(s);
    return state;
}

/* take(ssrc) -> the counters since the last hand-over (see stream_take), the stream staying armed; None when not
 * armed. (Python flushes an armed stream on a timer, so that counters do not wait in C for the next packet.) */
static PyObject *inlet_take(Inlet *self, PyObject *arg) {
    Stream *s;
    if (inlet_arg_stream(self, arg, &s) < 0)
        return NULL;
    if (s == NULL)
        Py_RETURN_NONE;
    return stream_take(s);
}

/* quiet(ns) -> [(owner, state), ...]: the counters of each armed stream that has something C counted and has had
 * no packet for `ns` nanoseconds (a stream that went quiet); streams whose packets flow sync themselves.
 * One call per Inlet on Python's shared flush tick replaces a timer per stream (aiortc_internals._QuietFlush). */
static PyObject *inlet_quiet(Inlet *self, PyObject *arg) {
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred())
        return NULL;
    PyObject *result = PyList_New(0);
    if (result == NULL)
        return NULL;
    long long now_ns = mono_ns();
    for (int i = 0; i < INLET_STREAMS; i++) {
        Stream *s = &self->streams[i];
        if (!s->active || (s->taken == 0 && s->remb_n == 0) || now_ns - s->packet_ns < ns)
            continue;
        PyObject *state = stream_take(s);
        PyObject *item = state == NULL ? NULL : PyTuple_Pack(2, s->owner, state);
        Py_XDECREF(state);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(item);
    }
    return result;
}

static PyObject *inlet_armed(Inlet *self, PyObject *unused) {
    PyObject *result = PyList_New(0);
    for (int i = 0; result != NULL && i < INLET_STREAMS; i++)
        if (self->streams[i].active) {
            PyObject *ssrc = PyLong_FromUnsignedLong(self->streams[i].ssrc);
            if (ssrc == NULL || PyList_Append(result, ssrc) < 0)
                Py_CLEAR(result);
            Py_XDECREF(ssrc);
        }
    return result;
}

/* Calls owner.<name>(state, a, b) for a stream (the stream may be disarmed by then); errors are reported, not
 * raised into asyncio's read callback. */
static void stream_call(PyObject *owner, PyObject *name, PyObject *state, PyObject *a, PyObject *b) {
    Py_INCREF(owner);
    PyObject *result = PyObject_CallMethodObjArgs(owner, name, state, a, b, NULL);
    if (result == NULL)
        PyErr_WriteUnraisable(owner);
    Py_XDECREF(result);
    Py_DECREF(owner);
}

static PyObject *call2(PyObject *fn, PyObject *a, PyObject *b) {
    PyObject *args[2] = {a, b};
    return PyObject_Vectorcall(fn, args, 2, NULL);
}

/* The datagram_received of the leg's protocols: (data, addr). */
static PyObject *inlet_call(Inlet *self, PyObject *args, PyObject *kwds) {
    PyObject *data, *addr;
    if (!PyArg_UnpackTuple(args, "Inlet", 2, 2, &data, &addr))
        return NULL;
    if (!PyBytes_Check(data))
        return call2(self->original, data, addr);
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (n < 2 || d[0] < 128 || d[0] > 191 || (d[1] > 191 && d[1] < 224))
        return call2(self->original, data, addr);  /* STUN, DTLS, SRTCP: aioice's way */
    Stream *s = NULL;
    if (n >= 12 && n <= BUFFER - TRAILER)
        s = inlet_find(self, ((uint32_t)d[8] << 24) | ((uint32_t)d[9] << 16) | ((uint32_t)d[10] << 8) | d[11]);
    if (s == NULL)
        return call2(self->slow, data, addr);
    PyObject *session = PyObject_GetAttr(self->dtls, str_rx_srtp);
    if (session == NULL)
        return NULL;
    Py_DECREF(session);  /* only its identity is compared: the DTLS transport holds it */
    PyObject *state = PyObject_GetAttr(self->dtls, str_state);
    if (state == NULL)
        return NULL;
    Py_DECREF(state);
    if (session != self->session || state != self->connected)
        return call2(self->slow, data, addr);
    s->taken++;
    s->wire_bytes += (unsigned long long)n;
    uint8_t buf[BUFFER];
    int len = (int)n;
    memcpy(buf, d, len);
    Parsed f;
    if (self->unprotect(self->ctx, buf, &len) != 0 || parse_rtp(buf, len, self->mid_id, self->abs_id, self->audio_id,
                                                                 &f) < 0)
        Py_RETURN_NONE;  /* not authentic, replayed or malformed: dropped, as aiortc does */
    Py_ssize_t payload_len = f.len - f.pos - f.padding;
    if (f.pt != s->pt || f.seq != (uint16_t)(s->max_seq + 1) || PyList_GET_SIZE(s->taps) != 0
            || (s->video && keyframe_start(s->codec, buf + f.pos, payload_len))) {
        /* Not steady: Python takes the stream back with this packet. */
        PyObject *state = stream_take(s);
        PyObject *fields = state != NULL ? parsed_tuple(buf, &f, NULL) : NULL;
        if (fields == NULL) {
            Py_XDECREF(state);
            PyErr_WriteUnraisable((PyObject *)self);
            stream_clear(s);
            Py_RETURN_NONE;
        }
        PyObject *owner = s->owner;
        Py_INCREF(owner);
        stream_clear(s);  /* before the call: Python may arm the stream again, in this slot */
        stream_call(owner, str_release, state, fields, Py_None);
        Py_DECREF(owner);
        Py_DECREF(state);
        Py_DECREF(fields);
        Py_RETURN_NONE;
    }
    /* aiortc's StreamStatistics.add for an in-order packet */
    double now = real_s();
    long long arrival = (long long)(now * s->clockrate);
    if (f.seq < s->max_seq)
        s->cycles += 1 << 16;
    if (f.ts != s->last_ts) {
        long long diff = (arrival - s->last_arrival) - ((long long)f.ts - (long long)s->last_ts);
        if (diff < 0)
            diff = -diff;
        s->jitter_q4 += diff - ((s->jitter_q4 + 8) >> 4);
    }
    s->last_arrival = arrival;
    s->last_ts = f.ts;
    s->max_seq = (uint16_t)f.seq;
    s->packets++;
    if (f.marker || !s->video)
        s->frames++;
    if (s->estimator && f.abs_send_time >= 0 && s->remb_n < REMB_MAX) {  /* for aiortc's REMB estimator, at the sync */
        RembInput *in = &s->remb[s->remb_n++];
        in->arrival_ms = (long long)((now + NTP_OFFSET) * 1000);
        in->abs_send_time = (uint32_t)f.abs_send_time;
        in->size = (uint32_t)(payload_len + f.padding);
    }
    PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + f.pos, payload_len);
    if (payload == NULL)
        return NULL;
    long long now_ns = mono_ns();
    s->packet_ns = now_ns;
    PyObject *attention = NULL;
    if (fanout_routes(s->routes, f.ssrc, (uint16_t)f.seq, f.ts, f.marker, payload, f.padding, f.audio, now_ns,
                      &attention) < 0) {
        Py_DECREF(payload);
        return NULL;
    }
    PyObject *fields = NULL;
    if (s->gop != NULL && PyList_GET_SIZE(s->gop) > 0) {  /* Producer.gop: the packets since the latest keyframe */
        fields = parsed_tuple(buf, &f, payload);
        Py_ssize_t size = PyList_GET_SIZE(s->gop) + 1;
        if (fields == NULL || PyList_Append(s->gop, fields) < 0
                || (size > GOP_MAX && PyList_SetSlice(s->gop, 0, size, NULL) < 0)) {
            Py_XDECREF(fields);
            Py_XDECREF(attention);
            Py_DECREF(payload);
            return NULL;
        }
    }
    if (attention != NULL || ++s->since_sync >= SYNC_PACKETS || now_ns - s->synced_ns >= SYNC_NS
            || s->remb_n == REMB_MAX) {
        if (attention != NULL && fields == NULL)
            fields = parsed_tuple(buf, &f, payload);
        PyObject *state = stream_take(s);
        if (state == NULL || (attention != NULL && fields == NULL)) {
            Py_XDECREF(state);
            Py_XDECREF(fields);
            Py_XDECREF(attention);
            Py_DECREF(payload);
            return NULL;
        }
        stream_call(s->owner, str_sync, state, attention != NULL ? attention : Py_None,
                    fields != NULL ? fields : Py_None);
        Py_DECREF(state);
    }
    Py_XDECREF(fields);
    Py_XDECREF(attention);
    Py_DECREF(payload);
    Py_RETURN_NONE;
}

static PyMethodDef inlet_methods[] = {
    {"arm", (PyCFunction)inlet_arm, METH_VARARGS, "Take an incoming stream's steady packets in C."},
    {"disarm", (PyCFunction)inlet_disarm, METH_O, "Give a stream back to Python; returns its counters."},
    {"take", (PyCFunction)inlet_take, METH_O, "A stream's counters since the last hand-over; it stays armed."},
    {"quiet", (PyCFunction)inlet_quiet, METH_O, "(owner, counters) of each armed stream with counts pending "
     "and no packet for ns nanoseconds; they stay armed."},
    {"armed", (PyCFunction)inlet_armed, METH_NOARGS, "The SSRCs taken in C."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject InletType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.media._fastpath.Inlet",
    .tp_basicsize = sizeof(Inlet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = inlet_new,
    .tp_dealloc = (destructor)inlet_dealloc,
    .tp_traverse = (traverseproc)inlet_traverse,
    .tp_clear = (inquiry)inlet_clear,
    .tp_call = (ternaryfunc)inlet_call,
    .tp_methods = inlet_methods,
    .tp_doc = "Inlet(srtp_unprotect address, dtls transport, State.CONNECTED, original, slow, mid_id, abs_id, "
              "audio_id): a connected leg's datagram_received, taking steady streams in C.",
};


static PyMethodDef methods[] = {
    {"fanout", fanout, METH_VARARGS, "One source packet through every armed route."},
    {"unprotect_parse", unprotect_parse, METH_VARARGS, "SRTP-unprotect a datagram and parse its RTP header."},
    {"protect_send", protect_send, METH_VARARGS, "Build an RTP packet, SRTP-protect it and send it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

static int add_type(PyObject *m, const char *name, PyTypeObject *type) {  /* 0, or -1 with an exception set */
    if (PyType_Ready(type) < 0)
        return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(m, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (add_type(m, "Route", &RouteType) < 0 || add_type(m, "Inlet", &InletType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    str_rx_srtp = PyUnicode_InternFromString("_rx_srtp");
    str_state = PyUnicode_InternFromString("_state");
    str_sync = PyUnicode_InternFromString("sync");
    str_release = PyUnicode_InternFromString("release");
    if (!str_rx_srtp || !str_state || !str_sync || !str_release) {
        Py_DECREF(m);
        return NULL;
    }
    SrtpError = PyErr_NewException("_fastpath.SrtpError", NULL, NULL);
    if (SrtpError == NULL || PyModule_AddObject(m, "SrtpError", SrtpError) < 0) {
        Py_XDECREF(SrtpError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
