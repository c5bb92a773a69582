/* Benchmark subscriber on libmosquitto: subscribes a topic filter QoS1, prints "ready" once
 * the SUBACK is in, and records every message with its time.monotonic()-compatible arrival
 * time. Stops once --expected messages arrived and none came for 0.3 s, after --idle-s
 * without a message, or after --max-s.
 *
 *   sub --port P --topic FILTER --out FILE --expected N [--idle-s S] [--max-s S]
 *
 * FILE out: repeated [f64 arrival time][u32 payload length][payload], little endian. */
#include <mosquitto.h>
#include <unistd.h>

#include "common.h"

static const char *topic;
static FILE *out;
static long count;
static double last;
static int ready;

static void on_connect(struct mosquitto *m, void *u, int rc)
{
	(void)u;
	if (rc != 0) {
		die("sub: connection refused (%d)", rc);
	}
	mosquitto_subscribe(m, NULL, topic, 1);
}

static void on_subscribe(struct mosquitto *m, void *u, int mid, int n, const int *granted)
{
	(void)m;
	(void)u;
	(void)mid;
	(void)n;
	(void)granted;
	last = now_s();
	ready = 1;
	printf("ready\n");
	fflush(stdout);
}

static void on_message(struct mosquitto *m, void *u, const struct mosquitto_message *msg)
{
	(void)m;
	(void)u;
	double t = now_s();
	uint32_t len = (uint32_t)msg->payloadlen;
	fwrite(&t, sizeof t, 1, out);
	fwrite(&len, sizeof len, 1, out);
	fwrite(msg->payload, 1, len, out);
	count++;
	last = t;
}

int main(int argc, char **argv)
{
	int port = atoi(arg(argc, argv, "--port", NULL));
	topic = arg(argc, argv, "--topic", NULL);
	const char *path = arg(argc, argv, "--out", NULL);
	long expected = atol(arg(argc, argv, "--expected", NULL));
	double idle_s = atof(arg(argc, argv, "--idle-s", "10"));
	double max_s = atof(arg(argc, argv, "--max-s", "120"));

	out = fopen(path, "wb");
	if (out == NULL) {
		die("sub: %s: %s", path, strerror(errno));
	}
	setvbuf(out, NULL, _IOFBF, 1 << 20);
	mosquitto_lib_init();
	char id[64];
	snprintf(id, sizeof id, "bench-csub-%d", (int)getpid());
	struct mosquitto *m = mosquitto_new(id, true, NULL);
	if (m == NULL) {
		die("sub: mosquitto_new failed");
	}
	mosquitto_connect_callback_set(m, on_connect);
	mosquitto_subscribe_callback_set(m, on_subscribe);
	mosquitto_message_callback_set(m, on_message);
	if (mosquitto_connect(m, "127.0.0.1", port, 600) != MOSQ_ERR_SUCCESS) {
		die("sub: cannot connect to 127.0.0.1:%d", port);
	}
	double start = now_s();
	last = start;
	for (;;) {
		int rc = mosquitto_loop(m, 50, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			die("sub: connection lost: %s", mosquitto_strerror(rc));
		}
		double t = now_s();
		if (ready && count >= expected && t - last > 0.3) {
			break;
		}
		if (t - last > idle_s || t - start > max_s) {
			break;
		}
	}
	mosquitto_disconnect(m);
	mosquitto_destroy(m);
	mosquitto_lib_cleanup();
	fclose(out);
	return 0;
}
