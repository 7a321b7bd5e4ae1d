/*
 * ktls_probe: self-contained check that the running kernel can do kernel TLS.
 *
 * Built by tests/vm/build.sh with `gcc -static` and run inside the test VM.
 * For each case it connects a loopback TCP pair, attaches the "tls" ULP and
 * installs dummy (all-constant) key material, then checks that data really
 * goes through the kernel's record layer:
 *
 *   TCP_ULP   setsockopt(SOL_TCP, TCP_ULP, "tls") on the client socket
 *   TLS_TX    setsockopt(SOL_TLS, TLS_TX, crypto_info) on the client socket
 *   WIRE      (first case only) the plain peer receives an encrypted TLS record
 *             (application_data header, ciphertext != plaintext)
 *   TLS_RX    setsockopt(SOL_TLS, TLS_RX, crypto_info) on the server socket
 *   ROUNDTRIP send() on kTLS TX socket -> recv() on kTLS RX socket == plaintext
 *   SENDFILE  sendfile() a file into the kTLS TX socket, peer decrypts it
 *
 * Output is line oriented and stable (tests grep it):
 *   TCP_ULP OK | TCP_ULP ERR <errno> <strerror>
 *   TLS_TX OK  | TLS_TX ERR ...
 *   CASE <name> TCP_ULP=OK TLS_TX=OK WIRE=OK TLS_RX=OK ROUNDTRIP=OK SENDFILE=OK
 *   SUMMARY <ok>/<total> cases OK
 * Exit status: 0 when every step of every case succeeded, 1 otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

static const char MSG[] = "hello from ktls_probe: kernel TLS record layer works";

struct crypto {
	union {
		struct tls12_crypto_info_aes_gcm_128 gcm128;
		struct tls12_crypto_info_aes_gcm_256 gcm256;
		struct tls12_crypto_info_chacha20_poly1305 chacha;
	} u;
	socklen_t len;
};

static void fill_crypto(struct crypto *c, unsigned short version, unsigned short cipher)
{
	memset(c, 0, sizeof(*c));
	switch (cipher) {
	case TLS_CIPHER_AES_GCM_128:
		c->u.gcm128.info.version = version;
		c->u.gcm128.info.cipher_type = cipher;
		memset(c->u.gcm128.key, 0x11, sizeof(c->u.gcm128.key));
		memset(c->u.gcm128.iv, 0x22, sizeof(c->u.gcm128.iv));
		memset(c->u.gcm128.salt, 0x33, sizeof(c->u.gcm128.salt));
		c->len = sizeof(c->u.gcm128);
		break;
	case TLS_CIPHER_AES_GCM_256:
		c->u.gcm256.info.version = version;
		c->u.gcm256.info.cipher_type = cipher;
		memset(c->u.gcm256.key, 0x11, sizeof(c->u.gcm256.key));
		memset(c->u.gcm256.iv, 0x22, sizeof(c->u.gcm256.iv));
		memset(c->u.gcm256.salt, 0x33, sizeof(c->u.gcm256.salt));
		c->len = sizeof(c->u.gcm256);
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		c->u.chacha.info.version = version;
		c->u.chacha.info.cipher_type = cipher;
		memset(c->u.chacha.key, 0x11, sizeof(c->u.chacha.key));
		memset(c->u.chacha.iv, 0x22, sizeof(c->u.chacha.iv));
		c->len = sizeof(c->u.chacha);
		break;
	}
}

/* Connected loopback TCP pair: *cli (connect side), *srv (accept side). */
static int tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	struct timeval tv = { .tv_sec = 10 };
	int one = 1;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0)
		return -1;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen)) {
		close(l);
		return -1;
	}
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (*cli < 0 || connect(*cli, (struct sockaddr *)&a, sizeof(a))) {
		close(l);
		return -1;
	}
	*srv = accept(l, NULL, NULL);
	close(l);
	if (*srv < 0)
		return -1;
	setsockopt(*cli, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*srv, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return 0;
}

/* Read exactly n bytes (or fail). */
static int read_full(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, buf + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int step(const char *name, int ok, char *line, size_t cap)
{
	size_t used = strlen(line);
	if (ok)
		snprintf(line + used, cap - used, " %s=OK", name);
	else
		snprintf(line + used, cap - used, " %s=ERR(%d:%s)", name, errno, strerror(errno));
	return ok;
}

static int run_case(const char *name, unsigned short version, unsigned short cipher,
		    int legacy_lines, int check_wire)
{
	char line[512];
	struct crypto c;
	int cli = -1, srv = -1, ok = 1;
	char buf[4096];

	snprintf(line, sizeof(line), "CASE %s", name);
	fill_crypto(&c, version, cipher);

	if (tcp_pair(&cli, &srv)) {
		step("PAIR", 0, line, sizeof(line));
		puts(line);
		return 0;
	}

	/* 1. attach the ULP */
	int r = setsockopt(cli, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
	if (legacy_lines) {
		if (r == 0)
			printf("TCP_ULP OK\n");
		else
			printf("TCP_ULP ERR %d %s\n", errno, strerror(errno));
	}
	if (!step("TCP_ULP", r == 0, line, sizeof(line))) {
		if (legacy_lines)
			printf("TLS_TX ERR skipped: no TLS ULP\n");
		goto out_fail;
	}

	/* 2. install TX keys */
	r = setsockopt(cli, SOL_TLS, TLS_TX, &c.u, c.len);
	if (legacy_lines) {
		if (r == 0)
			printf("TLS_TX OK\n");
		else
			printf("TLS_TX ERR %d %s\n", errno, strerror(errno));
	}
	if (!step("TLS_TX", r == 0, line, sizeof(line)))
		goto out_fail;

	if (check_wire) {
		/* 3. the plain peer must see an encrypted application_data record:
		 * 5 byte header (0x17 0x03 0x03 len), payload != plaintext. */
		size_t tag = 16;
		size_t explicit_iv = (version == TLS_1_2_VERSION && cipher != TLS_CIPHER_CHACHA20_POLY1305) ? 8 : 0;
		size_t inner = (version == TLS_1_3_VERSION) ? 1 : 0; /* content type byte */
		size_t rec = 5 + explicit_iv + sizeof(MSG) + inner + tag;
		int wire_ok = send(cli, MSG, sizeof(MSG), 0) == (ssize_t)sizeof(MSG) &&
			      read_full(srv, buf, rec) == 0 &&
			      (unsigned char)buf[0] == 0x17 && buf[1] == 0x03 && buf[2] == 0x03 &&
			      (size_t)(((unsigned char)buf[3] << 8) | (unsigned char)buf[4]) == rec - 5 &&
			      memmem(buf, rec, MSG, sizeof(MSG) - 1) == NULL;
		if (!wire_ok && errno == 0)
			errno = EPROTO;
		if (!step("WIRE", wire_ok, line, sizeof(line)))
			goto out_fail;
		/* the RX side would now be out of sync: start over on a fresh pair */
		close(cli);
		close(srv);
		if (tcp_pair(&cli, &srv) ||
		    setsockopt(cli, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) ||
		    setsockopt(cli, SOL_TLS, TLS_TX, &c.u, c.len)) {
			step("REPAIR", 0, line, sizeof(line));
			goto out_fail;
		}
	}

	/* 4. RX keys on the peer (identical key material, identical sequence) */
	r = setsockopt(srv, SOL_TCP, TCP_ULP, "tls", sizeof("tls"));
	if (r == 0)
		r = setsockopt(srv, SOL_TLS, TLS_RX, &c.u, c.len);
	if (!step("TLS_RX", r == 0, line, sizeof(line)))
		goto out_fail;

	/* 5. send() -> kernel encrypt -> kernel decrypt -> recv() */
	errno = 0;
	int rt_ok = send(cli, MSG, sizeof(MSG), 0) == (ssize_t)sizeof(MSG) &&
		    read_full(srv, buf, sizeof(MSG)) == 0 && memcmp(buf, MSG, sizeof(MSG)) == 0;
	if (!rt_ok && errno == 0)
		errno = EBADMSG;
	if (!step("ROUNDTRIP", rt_ok, line, sizeof(line)))
		goto out_fail;

	/* 6. sendfile() into the kTLS socket (the zero-copy path proxies use) */
	{
		char path[] = "/tmp/ktls_probe.XXXXXX";
		char data[3000];
		int fd = mkstemp(path);
		int sf_ok = 0;
		for (size_t i = 0; i < sizeof(data); i++)
			data[i] = (char)('a' + i % 26);
		errno = 0;
		if (fd >= 0 && write(fd, data, sizeof(data)) == (ssize_t)sizeof(data)) {
			off_t off = 0;
			ssize_t s = sendfile(cli, fd, &off, sizeof(data));
			sf_ok = s == (ssize_t)sizeof(data) && read_full(srv, buf, sizeof(data)) == 0 &&
				memcmp(buf, data, sizeof(data)) == 0;
		}
		if (!sf_ok && errno == 0)
			errno = EBADMSG;
		if (fd >= 0) {
			close(fd);
			unlink(path);
		}
		if (!step("SENDFILE", sf_ok, line, sizeof(line)))
			goto out_fail;
	}

	puts(line);
	close(cli);
	close(srv);
	return ok;

out_fail:
	puts(line);
	if (cli >= 0)
		close(cli);
	if (srv >= 0)
		close(srv);
	return 0;
}

int main(void)
{
	static const struct {
		const char *name;
		unsigned short version, cipher;
	} cases[] = {
		{ "tls12-aes-gcm-128", TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_128 },
		{ "tls12-aes-gcm-256", TLS_1_2_VERSION, TLS_CIPHER_AES_GCM_256 },
		{ "tls12-chacha20-poly1305", TLS_1_2_VERSION, TLS_CIPHER_CHACHA20_POLY1305 },
		{ "tls13-aes-gcm-128", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_128 },
		{ "tls13-aes-gcm-256", TLS_1_3_VERSION, TLS_CIPHER_AES_GCM_256 },
		{ "tls13-chacha20-poly1305", TLS_1_3_VERSION, TLS_CIPHER_CHACHA20_POLY1305 },
	};
	int n = (int)(sizeof(cases) / sizeof(cases[0])), ok = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < n; i++)
		ok += run_case(cases[i].name, cases[i].version, cases[i].cipher, i == 0, 1);
	printf("SUMMARY %d/%d cases OK\n", ok, n);
	return ok == n ? 0 : 1;
}
