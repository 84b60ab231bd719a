/*
 * sink.c: a small HTTP/1.1 sink for bench/http.sh, so that the benchmark
 * measures orchestrator rather than test/client/http_sink.py (Python, one
 * core at most).  One thread, epoll, keep-alive.  Endpoints (any method):
 *   /fast        200 {"ok": true} at once
 *   /slow/<ms>   the same after <ms> milliseconds
 *   anything else 404
 * Listens on 127.0.0.1 only.  Build: cc -O2 -o sink bench/sink.c
 * Run:   ./sink PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS	4096
#define BUF_SIZE	65536

typedef struct Conn
{
	int			fd;
	char		buf[BUF_SIZE];
	size_t		len;
	long long	due_ms;			/* a delayed response is due (0: none) */
	int			status;
} Conn;

static Conn *conns[MAX_CONNS];

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
close_conn(int epfd, Conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	conns[c->fd] = NULL;
	free(c);
}

static int
respond(Conn *c, int status)
{
	static const char ok[] = "{\"ok\": true}";
	char		out[256];
	int			n;

	if (status == 200)
		n = snprintf(out, sizeof(out),
					 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
					 sizeof(ok) - 1, ok);
	else
		n = snprintf(out, sizeof(out), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
	/* small responses on a socket with room: written whole or the peer is gone */
	return write(c->fd, out, n) == n ? 0 : -1;
}

/* Handle the complete requests in c's buffer; -1 to close. */
static int
serve(Conn *c)
{
	while (c->due_ms == 0)
	{
		char	   *end;
		size_t		head;
		size_t		body = 0;
		char	   *p;
		char		path[256];

		if (c->len == 0)
			return 0;
		c->buf[c->len] = '\0';
		end = strstr(c->buf, "\r\n\r\n");
		if (end == NULL)
			return c->len >= BUF_SIZE - 1 ? -1 : 0;
		head = end - c->buf + 4;
		for (p = c->buf; p < end; p++)
		{
			if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0)
				body = strtoul(p + 16, NULL, 10);
		}
		if (head + body >= BUF_SIZE)
			return -1;
		if (c->len < head + body)
			return 0;
		if (sscanf(c->buf, "%*s %255s", path) != 1)
			return -1;
		c->status = strcmp(path, "/fast") == 0 || strncmp(path, "/slow/", 6) == 0 ? 200 : 404;
		memmove(c->buf, c->buf + head + body, c->len - head - body);
		c->len -= head + body;
		if (strncmp(path, "/slow/", 6) == 0)
		{
			c->due_ms = now_ms() + atoi(path + 6);
			return 0;
		}
		if (respond(c, c->status) != 0)
			return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr;
	struct epoll_event ev;
	struct epoll_event events[256];
	int			one = 1;
	int			lfd;
	int			epfd;

	if (argc != 2)
	{
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) != 0 || listen(lfd, 1024) != 0)
	{
		perror("sink: bind/listen");
		return 1;
	}
	epfd = epoll_create1(0);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);

	for (;;)
	{
		long long	now = now_ms();
		long long	next = -1;
		int			n;

		/* delayed responses that are due */
		for (int fd = 0; fd < MAX_CONNS; fd++)
		{
			Conn	   *c = conns[fd];

			if (c == NULL || c->due_ms == 0)
				continue;
			if (c->due_ms <= now)
			{
				c->due_ms = 0;
				if (respond(c, c->status) != 0 || serve(c) != 0)
				{
					close_conn(epfd, c);
					continue;
				}
			}
			if (c->due_ms != 0 && (next < 0 || c->due_ms < next))
				next = c->due_ms;
		}
		n = epoll_wait(epfd, events, 256, next < 0 ? 1000 : (int) (next - now > 0 ? next - now : 0));
		for (int i = 0; i < n; i++)
		{
			int			fd = events[i].data.fd;

			if (fd == lfd)
			{
				int			cfd;

				while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0)
				{
					Conn	   *c;

					if (cfd >= MAX_CONNS)
					{
						close(cfd);
						continue;
					}
					c = calloc(1, sizeof(Conn));
					c->fd = cfd;
					conns[cfd] = c;
					setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.fd = cfd;
					epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
				}
				continue;
			}
			if (conns[fd] != NULL)
			{
				Conn	   *c = conns[fd];
				ssize_t		r = read(fd, c->buf + c->len, BUF_SIZE - 1 - c->len);

				if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
				{
					close_conn(epfd, c);
					continue;
				}
				if (r > 0)
					c->len += r;
				if (serve(c) != 0)
					close_conn(epfd, c);
			}
		}
	}
}
