/* The load generator's media in C (bench/blaster.py): once aiortc has set a peer connection up (ICE + DTLS), its
 * socket is read and written by one thread of this module, without the GIL:
 * - paced RTP out (VP8 at 30 fps, Opus at 50 packets/s), the encoded loop's own frames and packets replayed, each
 *   packet's payload ending with a tag (call, stream, frame, packet index, packets in frame, the frame's send time,
 *   a check value) and protected with the SRTP session aiortc negotiated;
 * - SRTP in: unprotected, identified by the tag (the relays rewrite SSRC, sequence numbers and timestamps, not
 *   payloads), frames reassembled by tag and timed (CLOCK_MONOTONIC, ns);
 * - SRTCP in: PLI/FIR make the next video frame a keyframe, NACKs are counted;
 * - anything else (STUN, DTLS) is queued for Python, which hands it to aioice's protocol (Blaster.drain).
 * libsrtp sessions are not thread-safe: Python stops aiortc's RTP and RTCP for a peer before adding it here, and
 * every use of a session here happens under the module's lock. Like gateway/media/_fastpath.c, it calls pylibsrtp's
 * bundled libsrtp through addresses handed in: no libsrtp headers are needed.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

#define BUFFER 2048
#define TRAILER 144
#define PACKET_MAX 1300     /* aiortc's VP8 packetizer: payload (descriptor included) at most this */
#define TAG_LEN 28
#define DESCRIPTOR_LEN 4    /* X=1 S, I=1 with a 15-bit PictureID, as aiortc's packetizer writes it */
#define MAX_PACKETS 128     /* per frame (a larger frame is cut) */
#define MAX_PEERS 4096
#define MAX_SEND 3
#define MAX_RECV 3
#define MAX_PTS 8
#define MAGIC 0x43424c54u   /* "CBLT" */

typedef struct {
    int64_t *v;
    Py_ssize_t n, cap;
} Vec;

static int vec_push(Vec *vec, int64_t x) {
    if (vec->n == vec->cap) {
        Py_ssize_t cap = vec->cap ? vec->cap * 2 : 256;
        int64_t *v = realloc(vec->v, (size_t)cap * sizeof(int64_t));
        if (v == NULL)
            return -1;
        vec->v = v;
        vec->cap = cap;
    }
    vec->v[vec->n++] = x;
    return 0;
}

typedef struct {
    int video;
    uint32_t call, code, ssrc;
    int pt, mid_id, abs_id, mid_len;
    uint8_t mid[16];
    uint16_t seq;
    uint32_t ts, ts_step;
    int64_t interval, next;
    uint32_t frame;     /* frames (or audio packets) sent */
    int key_next;
    uint16_t picture_id;
    Vec sent;           /* send time (ns) of each frame's first packet / each audio packet */
    long keyframes, packets;
} Send;

typedef struct {
    int video;
    uint32_t call, code;
    int pts[MAX_PTS], npts;
    long packets, unidentified;
    int64_t first_seq, max_seq, cycles;
    int last_seq;
    /* the frame being assembled (video) */
    int64_t cur;
    uint64_t mask[MAX_PACKETS / 64];
    int have, need, done;
    Vec all;            /* video: arrival of each packet with the marker bit (a frame by RTP); audio: each packet */
    Vec ident;          /* arrival of each frame (video: complete by tag) or packet (audio) identified by its tag */
    Vec delay;          /* its delay (ns): arrival of its last packet minus the send time of its first */
} Recv;

typedef struct {
    int id, fd, active;
    struct sockaddr_in remote;
    void *tx, *rx;
    Send send[MAX_SEND];
    int nsend;
    Recv recv[MAX_RECV];
    int nrecv;
    long nacks, plis, firs, rtcp, bad_srtp, other;
} Peer;

typedef struct Item {
    struct Item *next;
    int peer, len;
    struct sockaddr_in from;
    uint8_t data[];
} Item;

typedef struct {
    PyObject_HEAD
    srtp_fn protect, unprotect, unprotect_rtcp;
    uint8_t **key, **delta, **opus;
    int *key_len, *delta_len, *opus_len;
    int nframes, nopus;
    Peer *peers[MAX_PEERS];
    int npeers;
    int epfd, wake[2];
    pthread_t thread;
    int started, stop;
    pthread_mutex_t lock;
    Item *head, *tail;
    long queued;
    long send_errors;
} Blaster;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uint32_t check_value(const uint8_t *p, int n) {  /* FNV-1a */
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static void put32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint32_t get32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)(v >> 32)); put32(p + 4, (uint32_t)v); }
static uint64_t get64(const uint8_t *p) { return ((uint64_t)get32(p) << 32) | get32(p + 4); }

static void write_tag(uint8_t *p, const Send *s, int index, int count, int64_t sent) {
    put32(p, MAGIC);
    put32(p + 4, s->call);
    p[8] = (uint8_t)s->code;
    p[9] = (uint8_t)index;
    p[10] = (uint8_t)count;
    p[11] = 0;
    put32(p + 12, s->frame);
    put64(p + 16, (uint64_t)sent);
    put32(p + 24, check_value(p, 24));
}

/* One RTP packet: header (+ one-byte header extensions: abs-send-time, MID), payload, protect, sendto. */
static void send_packet(Blaster *b, Peer *peer, Send *s, int marker, const uint8_t *payload, int len) {
    uint8_t buf[BUFFER];
    int pos = 12;
    buf[0] = 0x80;
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | (s->pt & 0x7f));
    buf[2] = s->seq >> 8;
    buf[3] = s->seq & 0xff;
    put32(buf + 4, s->ts);
    put32(buf + 8, s->ssrc);
    if (s->abs_id || (s->mid_id && s->mid_len)) {
        buf[0] |= 0x10;
        int start = pos;
        buf[pos++] = 0xBE;
        buf[pos++] = 0xDE;
        pos += 2;
        int ext = pos;
        if (s->abs_id) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            /* 6.18 fixed-point seconds (NTP time >> 14) */
            uint64_t ntp_sec = (uint64_t)t.tv_sec + 2208988800u;
            uint64_t frac = ((uint64_t)t.tv_nsec << 32) / 1000000000u;
            uint32_t abs = (uint32_t)((((ntp_sec << 32) | frac) >> 14) & 0xFFFFFF);
            buf[pos++] = (uint8_t)((s->abs_id << 4) | 2);
            buf[pos++] = abs >> 16;
            buf[pos++] = abs >> 8;
            buf[pos++] = abs;
        }
        if (s->mid_id && s->mid_len) {
            buf[pos++] = (uint8_t)((s->mid_id << 4) | (s->mid_len - 1));
            memcpy(buf + pos, s->mid, s->mid_len);
            pos += s->mid_len;
        }
        while ((pos - ext) % 4)
            buf[pos++] = 0;
        int words = (pos - ext) / 4;
        buf[start + 2] = words >> 8;
        buf[start + 3] = words & 0xff;
    }
    if (pos + len + TRAILER > BUFFER)
        len = BUFFER - TRAILER - pos;
    memcpy(buf + pos, payload, len);
    int total = pos + len;
    s->seq++;
    s->packets++;
    if (b->protect(peer->tx, buf, &total) != 0) {
        b->send_errors++;
        return;
    }
    if (sendto(peer->fd, buf, total, 0, (struct sockaddr *)&peer->remote, sizeof(peer->remote)) < 0)
        b->send_errors++;
}

static void send_frame(Blaster *b, Peer *peer, Send *s, int64_t now) {
    uint8_t payload[PACKET_MAX + TAG_LEN];
    if (vec_push(&s->sent, now) < 0)
        return;
    if (!s->video) {
        int i = s->frame % b->nopus, n = b->opus_len[i];
        if (n > PACKET_MAX)
            n = PACKET_MAX;
        memcpy(payload, b->opus[i], n);
        write_tag(payload + n, s, 0, 1, now);
        send_packet(b, peer, s, 0, payload, n + TAG_LEN);
        s->ts += s->ts_step;
        s->frame++;
        return;
    }
    int i = s->frame % b->nframes;
    int key = s->key_next || i == 0;
    s->key_next = 0;
    if (key)
        s->keyframes++;
    const uint8_t *data = key ? b->key[i] : b->delta[i];
    int length = key ? b->key_len[i] : b->delta_len[i];
    int chunk = PACKET_MAX - DESCRIPTOR_LEN - TAG_LEN;
    int count = (length + chunk - 1) / chunk;
    if (count < 1)
        count = 1;
    if (count > MAX_PACKETS)
        count = MAX_PACKETS;
    for (int k = 0; k < count; k++) {
        int off = k * chunk, size = length - off < chunk ? length - off : chunk;
        if (size < 0)
            size = 0;
        payload[0] = k == 0 ? 0x90 : 0x80;  /* X, S on the frame's first packet, partition 0 */
        payload[1] = 0x80;                   /* I: PictureID present */
        payload[2] = 0x80 | ((s->picture_id >> 8) & 0x7f);
        payload[3] = s->picture_id & 0xff;
        memcpy(payload + DESCRIPTOR_LEN, data + off, size);
        write_tag(payload + DESCRIPTOR_LEN + size, s, k, count, now);
        send_packet(b, peer, s, k == count - 1, payload, DESCRIPTOR_LEN + size + TAG_LEN);
    }
    s->picture_id = (s->picture_id + 1) & 0x7fff;
    s->ts += s->ts_step;
    s->frame++;
}

static void handle_rtcp(Blaster *b, Peer *peer, uint8_t *buf, int len) {
    if (b->unprotect_rtcp(peer->rx, buf, &len) != 0) {
        peer->bad_srtp++;
        return;
    }
    peer->rtcp++;
    int pos = 0;
    while (pos + 4 <= len) {
        int fmt = buf[pos] & 0x1f, pt = buf[pos + 1];
        int size = (((buf[pos + 2] << 8) | buf[pos + 3]) + 1) * 4;
        if (pos + size > len)
            break;
        if (pt == 206 && (fmt == 1 || fmt == 4)) {  /* PLI, FIR: the next video frame is a keyframe */
            if (fmt == 1)
                peer->plis++;
            else
                peer->firs++;
            for (int i = 0; i < peer->nsend; i++)
                if (peer->send[i].video)
                    peer->send[i].key_next = 1;
        } else if (pt == 205 && fmt == 1) {  /* generic NACK: count the packets asked for */
            for (int q = pos + 12; q + 4 <= pos + size; q += 4) {
                unsigned blp = (buf[q + 2] << 8) | buf[q + 3];
                peer->nacks += 1 + __builtin_popcount(blp);
            }
        }
        pos += size;
    }
}

static void handle_rtp(Blaster *b, Peer *peer, uint8_t *buf, int len, int64_t arrival) {
    if (b->unprotect(peer->rx, buf, &len) != 0) {
        peer->bad_srtp++;
        return;
    }
    if (len < 12)
        return;
    int cc = buf[0] & 0x0f, pos = 12 + 4 * cc, marker = buf[1] >> 7, pt = buf[1] & 0x7f;
    unsigned seq = (buf[2] << 8) | buf[3];
    if ((buf[0] & 0x10) && pos + 4 <= len)
        pos += 4 + 4 * ((buf[pos + 2] << 8) | buf[pos + 3]);
    int end = len;
    if ((buf[0] & 0x20) && end > pos)
        end -= buf[end - 1];
    if (pos > end)
        return;
    Recv *r = NULL;
    for (int i = 0; i < peer->nrecv && r == NULL; i++)
        for (int k = 0; k < peer->recv[i].npts; k++)
            if (peer->recv[i].pts[k] == pt) {
                r = &peer->recv[i];
                break;
            }
    if (r == NULL)
        return;
    r->packets++;
    if (r->last_seq >= 0 && seq < 0x1000 && r->last_seq > 0xF000)
        r->cycles += 1 << 16;
    if (r->last_seq < 0 || ((seq - (unsigned)r->last_seq) & 0xFFFF) < 0x8000)
        r->last_seq = (int)seq;
    int64_t ext = r->cycles + seq;
    if (r->first_seq < 0)
        r->first_seq = ext;
    if (ext > r->max_seq)
        r->max_seq = ext;
    if (!r->video)
        vec_push(&r->all, arrival);
    else if (marker)
        vec_push(&r->all, arrival);
    const uint8_t *tag = buf + end - TAG_LEN;
    if (end - pos < TAG_LEN || get32(tag) != MAGIC || get32(tag + 24) != check_value(tag, 24)
            || get32(tag + 4) != r->call || tag[8] != r->code) {
        r->unidentified++;
        return;
    }
    int index = tag[9], count = tag[10];
    int64_t frame = get32(tag + 12), sent = (int64_t)get64(tag + 16);
    if (!r->video) {
        vec_push(&r->ident, arrival);
        vec_push(&r->delay, arrival - sent);
        return;
    }
    if (count < 1 || count > MAX_PACKETS || index >= count)
        return;
    if (frame != r->cur) {
        r->cur = frame;
        memset(r->mask, 0, sizeof(r->mask));
        r->have = 0;
        r->need = count;
        r->done = 0;
    }
    if (r->done || (r->mask[index / 64] >> (index % 64)) & 1)
        return;
    r->mask[index / 64] |= (uint64_t)1 << (index % 64);
    if (++r->have == r->need) {
        r->done = 1;
        vec_push(&r->ident, arrival);
        vec_push(&r->delay, arrival - sent);
    }
}

static void queue_other(Blaster *b, Peer *peer, const uint8_t *buf, int len, struct sockaddr_in *from) {
    Item *item = malloc(sizeof(Item) + len);
    if (item == NULL)
        return;
    item->next = NULL;
    item->peer = peer->id;
    item->len = len;
    item->from = *from;
    memcpy(item->data, buf, len);
    if (b->tail)
        b->tail->next = item;
    else
        b->head = item;
    b->tail = item;
    b->queued++;
    peer->other++;
}

static void read_peer(Blaster *b, Peer *peer) {
    uint8_t buf[BUFFER];
    for (int budget = 0; budget < 256; budget++) {
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(peer->fd, buf, BUFFER - TRAILER, MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;  /* EAGAIN (or an error for asyncio's own reading to see: none here) */
        int64_t arrival = now_ns();
        if (n >= 12 && buf[0] > 127 && buf[0] < 192) {
            if (buf[1] > 191 && buf[1] < 224)
                handle_rtcp(b, peer, buf, (int)n);
            else
                handle_rtp(b, peer, buf, (int)n, arrival);
        } else {
            queue_other(b, peer, buf, (int)n, &from);
        }
    }
}

static void *run(void *arg) {
    Blaster *b = arg;
    struct epoll_event events[64];
    for (;;) {
        pthread_mutex_lock(&b->lock);
        if (b->stop) {
            pthread_mutex_unlock(&b->lock);
            return NULL;
        }
        int64_t now = now_ns(), next = now + 100000000;
        for (int p = 0; p < b->npeers; p++) {
            Peer *peer = b->peers[p];
            if (!peer->active)
                continue;
            for (int i = 0; i < peer->nsend; i++) {
                Send *s = &peer->send[i];
                if (now - s->next > 1000000000)  /* a second behind (a stalled machine): restart the pacing */
                    s->next = now;
                while (s->next <= now) {
                    send_frame(b, peer, s, now);
                    s->next += s->interval;
                }
                if (s->next < next)
                    next = s->next;
            }
        }
        pthread_mutex_unlock(&b->lock);
        int64_t wait = next - now_ns();
        int timeout = wait <= 0 ? 0 : (int)((wait + 999999) / 1000000);
        int n = epoll_wait(b->epfd, events, 64, timeout);
        if (n <= 0)
            continue;
        pthread_mutex_lock(&b->lock);
        for (int i = 0; i < n; i++) {
            Peer *peer = events[i].data.ptr;
            if (peer == NULL) {  /* the wake pipe */
                char c[64];
                while (read(b->wake[0], c, sizeof(c)) > 0) {
                }
                continue;
            }
            if (peer->active)
                read_peer(b, peer);
        }
        pthread_mutex_unlock(&b->lock);
    }
}

/* ---- Python interface ---- */

static uintptr_t address(PyObject *o) { return (uintptr_t)PyLong_AsUnsignedLongLong(o); }

static int copy_list(PyObject *list, uint8_t ***data, int **lens, int *count) {
    if (!PyList_Check(list) || PyList_GET_SIZE(list) == 0) {
        PyErr_SetString(PyExc_ValueError, "a non-empty list of bytes is needed");
        return -1;
    }
    int n = (int)PyList_GET_SIZE(list);
    *data = calloc(n, sizeof(uint8_t *));
    *lens = calloc(n, sizeof(int));
    if (*data == NULL || *lens == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *count = n;
    for (int i = 0; i < n; i++) {
        char *p;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(PyList_GET_ITEM(list, i), &p, &len) < 0)
            return -1;
        (*data)[i] = malloc(len ? len : 1);
        if ((*data)[i] == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy((*data)[i], p, len);
        (*lens)[i] = (int)len;
    }
    return 0;
}

static int Blaster_init(Blaster *self, PyObject *args, PyObject *kwds) {
    PyObject *protect, *unprotect, *unprotect_rtcp, *key, *delta, *opus;
    if (!PyArg_ParseTuple(args, "OOOOOO", &protect, &unprotect, &unprotect_rtcp, &key, &delta, &opus))
        return -1;
    if (self->epfd > 0) {
        PyErr_SetString(PyExc_RuntimeError, "already initialised");
        return -1;
    }
    self->protect = (srtp_fn)address(protect);
    self->unprotect = (srtp_fn)address(unprotect);
    self->unprotect_rtcp = (srtp_fn)address(unprotect_rtcp);
    if (PyErr_Occurred())
        return -1;
    int nkey;
    if (copy_list(key, &self->key, &self->key_len, &nkey) < 0
            || copy_list(delta, &self->delta, &self->delta_len, &self->nframes) < 0
            || copy_list(opus, &self->opus, &self->opus_len, &self->nopus) < 0)
        return -1;
    if (nkey != self->nframes) {
        PyErr_SetString(PyExc_ValueError, "key and delta frames differ in number");
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd < 0 || pipe2(self->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(self->epfd, EPOLL_CTL_ADD, self->wake[0], &ev);
    if (pthread_create(&self->thread, NULL, run, self) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot start the blaster thread");
        return -1;
    }
    self->started = 1;
    return 0;
}

static void lock(Blaster *b) {
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&b->lock);
    Py_END_ALLOW_THREADS
}

static void wake(Blaster *b) {
    char c = 1;
    if (write(b->wake[1], &c, 1) < 0) {
    }
}

static Peer *peer_of(Blaster *b, int id) {
    if (id < 0 || id >= b->npeers) {
        PyErr_SetString(PyExc_IndexError, "no such peer");
        return NULL;
    }
    return b->peers[id];
}

/* add_peer(fd, host, port, tx srtp_t, rx srtp_t) -> peer id (not active until start_peer) */
static PyObject *Blaster_add_peer(Blaster *self, PyObject *args) {
    int fd, port;
    const char *host;
    PyObject *tx, *rx;
    if (!PyArg_ParseTuple(args, "isiOO", &fd, &host, &port, &tx, &rx))
        return NULL;
    if (!self->started) {
        PyErr_SetString(PyExc_RuntimeError, "not initialised");
        return NULL;
    }
    Peer *peer = calloc(1, sizeof(Peer));
    if (peer == NULL)
        return PyErr_NoMemory();
    peer->fd = fd;
    peer->remote.sin_family = AF_INET;
    peer->remote.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &peer->remote.sin_addr) != 1) {
        free(peer);
        PyErr_Format(PyExc_ValueError, "not an IPv4 address: %s", host);
        return NULL;
    }
    peer->tx = (void *)address(tx);
    peer->rx = (void *)address(rx);
    if (PyErr_Occurred()) {
        free(peer);
        return NULL;
    }
    lock(self);
    if (self->npeers == MAX_PEERS) {
        pthread_mutex_unlock(&self->lock);
        free(peer);
        PyErr_SetString(PyExc_RuntimeError, "too many peers");
        return NULL;
    }
    peer->id = self->npeers;
    self->peers[self->npeers++] = peer;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromLong(peer->id);
}

/* add_send(peer, video, call, code, ssrc, pt, seq, ts, mid_id, mid, abs_id) -> stream index */
static PyObject *Blaster_add_send(Blaster *self, PyObject *args) {
    int id, video, pt, seq, mid_id, abs_id;
    unsigned int call, code, ssrc, ts;
    const char *mid;
    Py_ssize_t mid_len;
    if (!PyArg_ParseTuple(args, "iiIIIiiIiy#i", &id, &video, &call, &code, &ssrc, &pt, &seq, &ts, &mid_id, &mid,
                          &mid_len, &abs_id))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    if (mid_len > 16 || peer->nsend == MAX_SEND || peer->active) {
        PyErr_SetString(PyExc_ValueError, "MID too long, too many streams or the peer already started");
        return NULL;
    }
    Send *s = &peer->send[peer->nsend];
    memset(s, 0, sizeof(*s));
    s->video = video;
    s->call = call;
    s->code = code;
    s->ssrc = ssrc;
    s->pt = pt;
    s->seq = (uint16_t)seq;
    s->ts = ts;
    s->mid_id = mid_id;
    s->abs_id = abs_id;
    memcpy(s->mid, mid, mid_len);
    s->mid_len = (int)mid_len;
    s->ts_step = video ? 3000 : 960;
    s->interval = video ? 1000000000 / 30 : 20000000;
    s->key_next = video;
    s->picture_id = (uint16_t)(ssrc & 0x7fff);
    return PyLong_FromLong(peer->nsend++);
}

/* add_recv(peer, video, call, code, payload types) -> stream index */
static PyObject *Blaster_add_recv(Blaster *self, PyObject *args) {
    int id, video;
    unsigned int call, code;
    PyObject *pts;
    if (!PyArg_ParseTuple(args, "iiIIO!", &id, &video, &call, &code, &PyTuple_Type, &pts))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    if (peer->nrecv == MAX_RECV || PyTuple_GET_SIZE(pts) > MAX_PTS || peer->active) {
        PyErr_SetString(PyExc_ValueError, "too many streams or payload types, or the peer already started");
        return NULL;
    }
    Recv *r = &peer->recv[peer->nrecv];
    memset(r, 0, sizeof(*r));
    r->video = video;
    r->call = call;
    r->code = code;
    r->first_seq = r->max_seq = -1;
    r->last_seq = -1;
    r->cur = -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pts); i++) {
        long pt = PyLong_AsLong(PyTuple_GET_ITEM(pts, i));
        if (PyErr_Occurred())
            return NULL;
        r->pts[r->npts++] = (int)pt;
    }
    return PyLong_FromLong(peer->nrecv++);
}

/* start_peer(peer): the thread reads its socket and sends its streams from now on */
static PyObject *Blaster_start_peer(Blaster *self, PyObject *args) {
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    lock(self);
    int64_t now = now_ns();
    for (int i = 0; i < peer->nsend; i++)
        peer->send[i].next = now;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = peer};
    int err = epoll_ctl(self->epfd, EPOLL_CTL_ADD, peer->fd, &ev);
    if (err == 0)
        peer->active = 1;
    pthread_mutex_unlock(&self->lock);
    if (err != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    wake(self);
    Py_RETURN_NONE;
}

/* stop_peer(peer): no more sending, reading or SRTP for it (before aiortc closes the connection) */
static PyObject *Blaster_stop_peer(Blaster *self, PyObject *args) {
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    lock(self);
    if (peer->active) {
        epoll_ctl(self->epfd, EPOLL_CTL_DEL, peer->fd, NULL);
        peer->active = 0;
    }
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

/* drain() -> [(peer, datagram, (host, port))]: what was not RTP/RTCP, for aioice's protocol */
static PyObject *Blaster_drain(Blaster *self, PyObject *unused) {
    lock(self);
    Item *item = self->head;
    self->head = self->tail = NULL;
    pthread_mutex_unlock(&self->lock);
    PyObject *out = PyList_New(0);
    while (item != NULL) {
        Item *next = item->next;
        if (out != NULL) {
            char host[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &item->from.sin_addr, host, sizeof(host));
            PyObject *entry = Py_BuildValue("(iy#(si))", item->peer, item->data, (Py_ssize_t)item->len, host,
                                            (int)ntohs(item->from.sin_port));
            if (entry == NULL || PyList_Append(out, entry) < 0)
                Py_CLEAR(out);
            Py_XDECREF(entry);
        }
        free(item);
        item = next;
    }
    return out;
}

static PyObject *vec_bytes(const Vec *v) {
    return PyBytes_FromStringAndSize((const char *)v->v, v->n * (Py_ssize_t)sizeof(int64_t));
}

/* The (peer, stream) arguments of sent() and received(): the peer, and in *i a stream index below its nsend
   (receiving 0) or nrecv (receiving 1); NULL with an exception set otherwise. */
static Peer *peer_stream(Blaster *self, PyObject *args, int receiving, int *i) {
    int id;
    if (!PyArg_ParseTuple(args, "ii", &id, i))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    if (*i < 0 || *i >= (receiving ? peer->nrecv : peer->nsend)) {
        PyErr_SetString(PyExc_IndexError, "no such stream");
        return NULL;
    }
    return peer;
}

/* sent(peer, stream) -> dict: times (int64 ns as bytes), keyframes, packets */
static PyObject *Blaster_sent(Blaster *self, PyObject *args) {
    int i;
    Peer *peer = peer_stream(self, args, 0, &i);
    if (peer == NULL)
        return NULL;
    lock(self);
    Send *s = &peer->send[i];
    PyObject *out = Py_BuildValue("{s:N,s:l,s:l}", "times", vec_bytes(&s->sent), "keyframes", s->keyframes,
                                  "packets", s->packets);
    pthread_mutex_unlock(&self->lock);
    return out;
}

/* received(peer, stream) -> dict: all / identified arrivals and delays (int64 ns as bytes), packet counts */
static PyObject *Blaster_received(Blaster *self, PyObject *args) {
    int i;
    Peer *peer = peer_stream(self, args, 1, &i);
    if (peer == NULL)
        return NULL;
    lock(self);
    Recv *r = &peer->recv[i];
    PyObject *out = Py_BuildValue("{s:N,s:N,s:N,s:l,s:l,s:L,s:L}", "all", vec_bytes(&r->all), "identified",
                                  vec_bytes(&r->ident), "delays", vec_bytes(&r->delay), "packets", r->packets,
                                  "unidentified", r->unidentified, "first_seq", (long long)r->first_seq,
                                  "max_seq", (long long)r->max_seq);
    pthread_mutex_unlock(&self->lock);
    return out;
}

/* counters(peer) -> dict */
static PyObject *Blaster_counters(Blaster *self, PyObject *args) {
    int id;
    if (!PyArg_ParseTuple(args, "i", &id))
        return NULL;
    Peer *peer = peer_of(self, id);
    if (peer == NULL)
        return NULL;
    lock(self);
    PyObject *out = Py_BuildValue("{s:l,s:l,s:l,s:l,s:l,s:l,s:l}", "nacks", peer->nacks, "plis", peer->plis, "firs",
                                  peer->firs, "rtcp", peer->rtcp, "bad_srtp", peer->bad_srtp, "other", peer->other,
                                  "send_errors", self->send_errors);
    pthread_mutex_unlock(&self->lock);
    return out;
}

static PyObject *Blaster_close(Blaster *self, PyObject *unused) {
    if (self->started) {
        lock(self);
        self->stop = 1;
        pthread_mutex_unlock(&self->lock);
        wake(self);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(self->thread, NULL);
        Py_END_ALLOW_THREADS
        self->started = 0;
    }
    Py_RETURN_NONE;
}

static void free_list(uint8_t **data, int *lens, int n) {
    if (data)
        for (int i = 0; i < n; i++)
            free(data[i]);
    free(data);
    free(lens);
}

static void Blaster_dealloc(Blaster *self) {
    Blaster_close(self, NULL);
    for (int p = 0; p < self->npeers; p++) {
        Peer *peer = self->peers[p];
        for (int i = 0; i < peer->nsend; i++)
            free(peer->send[i].sent.v);
        for (int i = 0; i < peer->nrecv; i++) {
            free(peer->recv[i].all.v);
            free(peer->recv[i].ident.v);
            free(peer->recv[i].delay.v);
        }
        free(peer);
    }
    while (self->head) {
        Item *next = self->head->next;
        free(self->head);
        self->head = next;
    }
    if (self->epfd > 0) {
        close(self->epfd);
        close(self->wake[0]);
        close(self->wake[1]);
    }
    free_list(self->key, self->key_len, self->nframes);
    free_list(self->delta, self->delta_len, self->nframes);
    free_list(self->opus, self->opus_len, self->nopus);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Blaster_methods[] = {
    {"add_peer", (PyCFunction)Blaster_add_peer, METH_VARARGS, NULL},
    {"add_send", (PyCFunction)Blaster_add_send, METH_VARARGS, NULL},
    {"add_recv", (PyCFunction)Blaster_add_recv, METH_VARARGS, NULL},
    {"start_peer", (PyCFunction)Blaster_start_peer, METH_VARARGS, NULL},
    {"stop_peer", (PyCFunction)Blaster_stop_peer, METH_VARARGS, NULL},
    {"drain", (PyCFunction)Blaster_drain, METH_NOARGS, NULL},
    {"sent", (PyCFunction)Blaster_sent, METH_VARARGS, NULL},
    {"received", (PyCFunction)Blaster_received, METH_VARARGS, NULL},
    {"counters", (PyCFunction)Blaster_counters, METH_VARARGS, NULL},
    {"close", (PyCFunction)Blaster_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BlasterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bench._blaster.Blaster",
    .tp_basicsize = sizeof(Blaster),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Blaster(srtp_protect, srtp_unprotect, srtp_unprotect_rtcp addresses, key frames, delta frames, opus "
              "packets): the load generator's media thread.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Blaster_init,
    .tp_dealloc = (destructor)Blaster_dealloc,
    .tp_methods = Blaster_methods,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_blaster", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__blaster(void) {
    if (PyType_Ready(&BlasterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&BlasterType);
    if (PyModule_AddObject(m, "Blaster", (PyObject *)&BlasterType) < 0) {
        Py_DECREF(&BlasterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
