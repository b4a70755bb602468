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

typedef int (*srtp_fn)(void *ctx, void *hdr, int *len);

#define BUFFER 2048   /* a datagram (<= 1500 bytes) plus the SRTP trailer */
#define TRAILER 144   /* SRTP_MAX_TRAILER_LEN */

static PyObject *SrtpError;

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
    if (len < 12 || (buf[0] >> 6) != 2)
        return PyLong_FromLong(-1);
    int padding_bit = buf[0] & 0x20, ext_bit = buf[0] & 0x10, cc = buf[0] & 0x0F;
    int marker = buf[1] >> 7, pt = buf[1] & 0x7F;
    unsigned seq = (buf[2] << 8) | buf[3];
    unsigned long ts = ((unsigned long)buf[4] << 24) | (buf[5] << 16) | (buf[6] << 8) | buf[7];
    unsigned long ssrc = ((unsigned long)buf[8] << 24) | (buf[9] << 16) | (buf[10] << 8) | buf[11];
    int pos = 12 + 4 * cc;
    long abs_send_time = -1;
    int audio = -1;
    const uint8_t *mid = NULL;
    int mid_len = 0;
    if (pos > len)
        return PyLong_FromLong(-1);
    if (ext_bit) {
        if (pos + 4 > len)
            return PyLong_FromLong(-1);
        unsigned profile = (buf[pos] << 8) | buf[pos + 1];
        int ext_len = 4 * ((buf[pos + 2] << 8) | buf[pos + 3]);
        pos += 4;
        if (pos + ext_len > len)
            return PyLong_FromLong(-1);
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
                abs_send_time = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2];
            else if (id == audio_id && n >= 1)
                audio = buf[p];
            else if (id == mid_id && n >= 1) {
                mid = buf + p;
                mid_len = n;
            }
            p += n;
        }
        pos = end;
    }
    int padding = 0;
    if (padding_bit) {
        padding = buf[len - 1];
        if (padding == 0 || pos + padding > len)
            return PyLong_FromLong(-1);
    }
    PyObject *abs = abs_send_time >= 0 ? PyLong_FromLong(abs_send_time) : (Py_INCREF(Py_None), Py_None);
    PyObject *level = audio >= 0 ? Py_BuildValue("(Oi)", (audio & 0x80) ? Py_True : Py_False, audio & 0x7F)
                                 : (Py_INCREF(Py_None), Py_None);
    PyObject *mid_obj = mid != NULL ? PyUnicode_DecodeASCII((const char *)mid, mid_len, "replace")
                                    : (Py_INCREF(Py_None), Py_None);
    PyObject *result = NULL;
    if (abs && level && mid_obj)
        result = Py_BuildValue("(iiIkky#iiOOO)", pt, marker, seq, ts, ssrc, buf + pos, (Py_ssize_t)(len - pos - padding),
                               padding, cc, abs, level, mid_obj);
    Py_XDECREF(abs);
    Py_XDECREF(level);
    Py_XDECREF(mid_obj);
    return result;
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

static PyMethodDef methods[] = {
    {"unprotect_parse", unprotect_parse, METH_VARARGS, "SRTP-unprotect a datagram and parse its RTP header."},
    {"protect_send", protect_send, METH_VARARGS, "Build an RTP packet, SRTP-protect it and send it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    SrtpError = PyErr_NewException("_fastpath.SrtpError", NULL, NULL);
    if (SrtpError == NULL || PyModule_AddObject(m, "SrtpError", SrtpError) < 0) {
        Py_XDECREF(SrtpError);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
