/* The limit contender: a C relay. Subscribes miot/# QoS1 on the source broker, republishes
 * every payload unchanged QoS1 to the upstream broker as <out-prefix>/<topic without its
 * first level> with libmosquitto, and acknowledges a source message only after the
 * upstream PUBACK of its copy (in arrival order, like the gateway), with at most --window
 * source messages unacknowledged: when the window is full it stops reading the source.
 *
 * libmosquitto sends the PUBACK of an incoming message as soon as its message callback
 * returns, so it cannot hold an ack for a later upstream PUBACK. The source side is
 * therefore a minimal MQTT 3.1.1 subscriber written here (CONNECT, SUBSCRIBE, PUBLISH in,
 * PUBACK out: a few dozen lines, no allocation per message); the upstream side is
 * libmosquitto. Both run in one thread around poll(). Prints "ready" once subscribed.
 *
 *   relay --port P [--upstream-port P] [--out-prefix relay/c] [--window 100] */
#include <arpa/inet.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

struct pending {
	uint16_t src_pid; /* the source's packet id, to acknowledge */
	uint8_t acked;    /* upstream PUBACK received */
};

static struct pending *ring;
static size_t ring_cap, ring_head, ring_count;
static size_t slot_of_mid[65536];
static uint8_t tracked[65536]; /* mid of a QoS1 copy whose source ack waits for it */
static unsigned char outbuf[1 << 16];
static size_t out_len;
static int up_connected;

static unsigned char *inbuf;
static size_t in_cap = 1 << 18, in_start, in_end;

static void on_connect(struct mosquitto *m, void *u, int rc)
{
	(void)m;
	(void)u;
	up_connected = rc == 0 ? 1 : -1;
}

/* Upstream PUBACK: mark the slot, then release the acks of the oldest acked messages. */
static void on_publish(struct mosquitto *m, void *u, int mid)
{
	(void)m;
	(void)u;
	if (!tracked[mid & 0xFFFF]) {
		return; /* libmosquitto also reports QoS0 sends here */
	}
	tracked[mid & 0xFFFF] = 0;
	ring[slot_of_mid[mid & 0xFFFF]].acked = 1;
	while (ring_count > 0 && ring[ring_head].acked) {
		uint16_t pid = ring[ring_head].src_pid;
		if (out_len + 4 > sizeof outbuf) {
			die("relay: ack buffer full");
		}
		outbuf[out_len++] = 0x40;
		outbuf[out_len++] = 2;
		outbuf[out_len++] = (unsigned char)(pid >> 8);
		outbuf[out_len++] = (unsigned char)(pid & 0xFF);
		ring_head = (ring_head + 1) % ring_cap;
		ring_count--;
	}
}

static void send_all(int fd, const unsigned char *buf, size_t len)
{
	while (len > 0) {
		ssize_t k = send(fd, buf, len, MSG_NOSIGNAL);
		if (k < 0) {
			die("relay: source send: %s", strerror(errno));
		}
		buf += k;
		len -= (size_t)k;
	}
}

static void flush_acks(int fd)
{
	size_t done = 0;
	while (done < out_len) {
		ssize_t k = send(fd, outbuf + done, out_len - done, MSG_NOSIGNAL);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				break;
			}
			die("relay: source send: %s", strerror(errno));
		}
		done += (size_t)k;
	}
	memmove(outbuf, outbuf + done, out_len - done);
	out_len -= done;
}

static void put_str(unsigned char **p, const char *s)
{
	size_t n = strlen(s);
	*(*p)++ = (unsigned char)(n >> 8);
	*(*p)++ = (unsigned char)(n & 0xFF);
	memcpy(*p, s, n);
	*p += n;
}

/* One whole packet at inbuf[in_start..]: returns its type byte and sets body/len, or -1. */
static int next_packet(unsigned char **body, size_t *len)
{
	size_t avail = in_end - in_start;
	unsigned char *p = inbuf + in_start;
	size_t rem = 0;
	size_t i = 1;
	for (int shift = 0;; shift += 7, i++) {
		if (i >= avail) {
			return -1;
		}
		if (shift > 21) {
			die("relay: bad remaining length from the source");
		}
		rem |= (size_t)(p[i] & 0x7F) << shift;
		if ((p[i] & 0x80) == 0) {
			break;
		}
	}
	if (avail < i + 1 + rem) {
		if (i + 1 + rem > in_cap) { /* a packet larger than the buffer: grow it */
			in_cap = i + 1 + rem;
			unsigned char *bigger = malloc(in_cap);
			memcpy(bigger, p, avail);
			free(inbuf);
			inbuf = bigger;
			in_start = 0;
			in_end = avail;
		}
		return -1;
	}
	*body = p + i + 1;
	*len = rem;
	in_start += i + 1 + rem;
	return p[0];
}

static int read_some(int fd)
{
	if (in_start == in_end) {
		in_start = in_end = 0;
	} else if (in_end == in_cap) {
		memmove(inbuf, inbuf + in_start, in_end - in_start);
		in_end -= in_start;
		in_start = 0;
	}
	if (in_end == in_cap) {
		return 0;
	}
	ssize_t k = recv(fd, inbuf + in_end, in_cap - in_end, 0);
	if (k == 0) {
		die("relay: the source broker closed the connection");
	}
	if (k < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return 0;
		}
		die("relay: source recv: %s", strerror(errno));
	}
	in_end += (size_t)k;
	return 1;
}

static void wait_for(int fd, int type)
{
	unsigned char *body;
	size_t len;
	for (;;) {
		int t = next_packet(&body, &len);
		if (t >= 0) {
			if ((t & 0xF0) != type) {
				die("relay: unexpected packet 0x%02x from the source", t);
			}
			if (type == 0x20 && (len < 2 || body[1] != 0)) {
				die("relay: the source refused the connection");
			}
			if (type == 0x90 && (len < 3 || body[2] > 1)) {
				die("relay: the source refused the subscription");
			}
			return;
		}
		read_some(fd);
	}
}

static void relay_input(struct mosquitto *up, const char *prefix)
{
	static char topic_out[65536 + 256];
	size_t plen = strlen(prefix);
	memcpy(topic_out, prefix, plen);
	topic_out[plen++] = '/';
	while (ring_count < ring_cap) {
		unsigned char *b;
		size_t len;
		int t = next_packet(&b, &len);
		if (t < 0) {
			return;
		}
		if ((t & 0xF0) != 0x30) {
			continue; /* PINGRESP and the like */
		}
		int qos = (t >> 1) & 3;
		size_t tl = ((size_t)b[0] << 8) | b[1];
		const unsigned char *topic = b + 2;
		size_t off = 2 + tl;
		uint16_t pid = 0;
		if (qos > 0) {
			pid = (uint16_t)((b[off] << 8) | b[off + 1]);
			off += 2;
		}
		const unsigned char *slash = memchr(topic, '/', tl);
		size_t rest = slash ? tl - (size_t)(slash + 1 - topic) : 0;
		memcpy(topic_out + plen, slash ? slash + 1 : topic, rest);
		topic_out[plen + rest] = '\0';
		int mid = 0;
		int rc = mosquitto_publish(up, &mid, topic_out, (int)(len - off), b + off,
					   qos ? 1 : 0, false);
		if (rc != MOSQ_ERR_SUCCESS) {
			die("relay: upstream publish: %s", mosquitto_strerror(rc));
		}
		if (qos == 1) {
			size_t slot = (ring_head + ring_count) % ring_cap;
			ring[slot].src_pid = pid;
			ring[slot].acked = 0;
			slot_of_mid[mid & 0xFFFF] = slot;
			tracked[mid & 0xFFFF] = 1;
			ring_count++;
		}
	}
}

int main(int argc, char **argv)
{
	int port = atoi(arg(argc, argv, "--port", NULL));
	int up_port = atoi(arg(argc, argv, "--upstream-port", arg(argc, argv, "--port", NULL)));
	const char *prefix = arg(argc, argv, "--out-prefix", "relay/c");
	ring_cap = (size_t)atol(arg(argc, argv, "--window", "100"));
	if (ring_cap < 1 || ring_cap > 65535) {
		die("relay: --window must be 1..65535");
	}
	ring = calloc(ring_cap, sizeof *ring);
	inbuf = malloc(in_cap);

	/* Upstream: libmosquitto, never more than the window in flight. */
	mosquitto_lib_init();
	struct mosquitto *up = mosquitto_new("bench-relay-c-up", true, NULL);
	if (up == NULL) {
		die("relay: mosquitto_new failed");
	}
	mosquitto_max_inflight_messages_set(up, (unsigned int)ring_cap);
	mosquitto_connect_callback_set(up, on_connect);
	mosquitto_publish_callback_set(up, on_publish);
	if (mosquitto_connect(up, "127.0.0.1", up_port, 600) != MOSQ_ERR_SUCCESS) {
		die("relay: cannot connect to 127.0.0.1:%d", up_port);
	}
	double t0 = now_s();
	while (up_connected == 0 && now_s() - t0 < 10) {
		mosquitto_loop(up, 50, 1);
	}
	if (up_connected != 1) {
		die("relay: no CONNACK from 127.0.0.1:%d", up_port);
	}

	/* Source: MQTT 3.1.1, clean session, no keep-alive. */
	int src = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(src, (struct sockaddr *)&addr, sizeof addr) != 0) {
		die("relay: cannot connect to 127.0.0.1:%d: %s", port, strerror(errno));
	}
	int one = 1;
	setsockopt(src, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	unsigned char pkt[256];
	unsigned char *p = pkt + 2;
	put_str(&p, "MQTT");
	*p++ = 4;    /* protocol level: 3.1.1 */
	*p++ = 0x02; /* clean session */
	*p++ = 0;
	*p++ = 0; /* keep-alive off */
	put_str(&p, "bench-relay-c");
	pkt[0] = 0x10;
	pkt[1] = (unsigned char)(p - pkt - 2);
	send_all(src, pkt, (size_t)(p - pkt));
	wait_for(src, 0x20);
	p = pkt + 2;
	*p++ = 0;
	*p++ = 1; /* packet id */
	put_str(&p, "miot/#");
	*p++ = 1; /* QoS1 */
	pkt[0] = 0x82;
	pkt[1] = (unsigned char)(p - pkt - 2);
	send_all(src, pkt, (size_t)(p - pkt));
	wait_for(src, 0x90);
	fcntl(src, F_SETFL, fcntl(src, F_GETFL) | O_NONBLOCK);
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		relay_input(up, prefix);
		flush_acks(src);
		struct pollfd fds[2] = {
			{src, (short)((ring_count < ring_cap ? POLLIN : 0) | (out_len ? POLLOUT : 0)), 0},
			{mosquitto_socket(up), (short)(POLLIN | (mosquitto_want_write(up) ? POLLOUT : 0)),
			 0},
		};
		if (poll(fds, 2, 1000) < 0 && errno != EINTR) {
			die("relay: poll: %s", strerror(errno));
		}
		if (fds[1].revents & (POLLIN | POLLERR | POLLHUP)) {
			int rc = mosquitto_loop_read(up, 1);
			if (rc != MOSQ_ERR_SUCCESS) {
				die("relay: upstream: %s", mosquitto_strerror(rc));
			}
		}
		if (fds[1].revents & POLLOUT) {
			mosquitto_loop_write(up, 1);
		}
		mosquitto_loop_misc(up);
		if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
			read_some(src);
		}
	}
}
