/* Benchmark publisher on libmosquitto: sends the messages of an input file QoS1 as fast as
 * it can (or at --rate msg/s), keeping at most --window publishes unacknowledged, and
 * records time.monotonic()-compatible send times.
 *
 *   pub --port P --in FILE --out FILE [--rate R] [--window W] [--max-s S]
 *
 * FILE in:  repeated [u16 topic length][topic][u32 payload length][payload], little endian.
 * FILE out: [u64 PUBACKs received][u64 n][n x f64 send time, 0 = not sent]. */
#include <mosquitto.h>
#include <unistd.h>

#include "common.h"

static long acked;
static long inflight;
static int connected;

static void on_connect(struct mosquitto *m, void *u, int rc)
{
	(void)m;
	(void)u;
	connected = rc == 0 ? 1 : -1;
}

static void on_publish(struct mosquitto *m, void *u, int mid)
{
	(void)m;
	(void)u;
	(void)mid;
	acked++;
	inflight--;
}

static void pump(struct mosquitto *m, int timeout_ms)
{
	int rc = mosquitto_loop(m, timeout_ms, 1);
	if (rc != MOSQ_ERR_SUCCESS) {
		die("pub: connection lost: %s", mosquitto_strerror(rc));
	}
}

int main(int argc, char **argv)
{
	int port = atoi(arg(argc, argv, "--port", NULL));
	const char *in = arg(argc, argv, "--in", NULL);
	const char *out = arg(argc, argv, "--out", NULL);
	double rate = atof(arg(argc, argv, "--rate", "0"));
	long window = atol(arg(argc, argv, "--window", "30000"));
	double max_s = atof(arg(argc, argv, "--max-s", "120"));

	size_t len;
	unsigned char *buf = read_file(in, &len);
	size_t n = 0;
	for (size_t pos = 0; pos + 6 <= len; n++) {
		uint16_t tl;
		uint32_t pl;
		memcpy(&tl, buf + pos, 2);
		memcpy(&pl, buf + pos + 2 + tl, 4);
		pos += 2 + (size_t)tl + 4 + pl;
	}
	char **topics = calloc(n, sizeof *topics);
	unsigned char **payloads = calloc(n, sizeof *payloads);
	int *plens = calloc(n, sizeof *plens);
	double *times = calloc(n, sizeof *times);
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		uint16_t tl;
		uint32_t pl;
		memcpy(&tl, buf + pos, 2);
		topics[i] = strndup((char *)buf + pos + 2, tl);
		memcpy(&pl, buf + pos + 2 + tl, 4);
		payloads[i] = buf + pos + 2 + tl + 4;
		plens[i] = (int)pl;
		pos += 2 + (size_t)tl + 4 + pl;
	}

	mosquitto_lib_init();
	char id[64];
	snprintf(id, sizeof id, "bench-cpub-%d", (int)getpid());
	struct mosquitto *m = mosquitto_new(id, true, NULL);
	if (m == NULL) {
		die("pub: mosquitto_new failed");
	}
	mosquitto_max_inflight_messages_set(m, 65535); /* the window below is the bound */
	mosquitto_connect_callback_set(m, on_connect);
	mosquitto_publish_callback_set(m, on_publish);
	if (mosquitto_connect(m, "127.0.0.1", port, 600) != MOSQ_ERR_SUCCESS) {
		die("pub: cannot connect to 127.0.0.1:%d", port);
	}
	double t0 = now_s();
	while (connected == 0 && now_s() - t0 < 10) {
		pump(m, 50);
	}
	if (connected != 1) {
		die("pub: no CONNACK from 127.0.0.1:%d", port);
	}
	t0 = now_s();
	double deadline = t0 + max_s;
	for (size_t i = 0; i < n; i++) {
		if (rate > 0) {
			double due = t0 + (double)i / rate;
			for (double d = due - now_s(); d > 0; d = due - now_s()) {
				if (d > 0.002) {
					pump(m, (int)(d * 1000) - 1);
				} else {
					usleep((useconds_t)(d * 1e6));
				}
			}
		}
		while (inflight >= window && now_s() < deadline) {
			pump(m, 10);
		}
		if (inflight >= window) {
			break;
		}
		times[i] = now_s();
		int rc = mosquitto_publish(m, NULL, topics[i], plens[i], payloads[i], 1, false);
		if (rc != MOSQ_ERR_SUCCESS) {
			die("pub: publish failed: %s", mosquitto_strerror(rc));
		}
		inflight++;
		if ((i & 63) == 0) {
			pump(m, 0);
		}
	}
	while (acked < (long)n && now_s() < deadline) {
		pump(m, 50);
	}
	mosquitto_disconnect(m);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();

	FILE *fh = fopen(out, "wb");
	if (fh == NULL) {
		die("pub: %s: %s", out, strerror(errno));
	}
	uint64_t head[2] = {(uint64_t)acked, (uint64_t)n};
	fwrite(head, sizeof head, 1, fh);
	fwrite(times, sizeof *times, n, fh);
	fclose(fh);
	return acked >= (long)n ? 0 : 1;
}
