/*-------------------------------------------------------------------------
 *
 * orchestrator-worker.c
 *	  A PostgreSQL client program that works the external steps of one queue
 *	  by running a command (the handler) once per claimed step.
 *
 *	  orchestrator-worker -d CONNINFO --queue Q [--concurrency N] -- CMD ARG...
 *
 * The handler is started with fork/exec (no shell) in a process group of its
 * own, gets the step's input JSON on standard input and the step's identity
 * in its environment; what it writes on standard output (JSON) completes the
 * step, a non-zero exit, a signal, output that is not JSON or a timeout fails
 * it (retryable) with the end of its standard error as the error.
 *
 * One process, one thread, one connection.  The main loop poll()s the
 * connection's socket (notifications on channel orchestrator_queue), the
 * handlers' pipes, and a self-pipe that the signal handlers write to
 * (SIGCHLD, SIGTERM, SIGINT).  Queries are synchronous: claim_steps,
 * heartbeat_step, complete_step and fail_step are short single statements,
 * and a handler that writes while a query is in flight only waits on its
 * pipe.  A lost connection is opened again with a growing delay; results of
 * handlers that ended in the meantime are kept and reported then (the lease
 * decides whether they still count).
 *
 * Copyright: the orchestrator authors; see the repository's licence.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include "common/logging.h"
#include "getopt_long.h"
#include "libpq-fe.h"

#ifndef ORCHESTRATOR_VERSION
#define ORCHESTRATOR_VERSION "unknown"
#endif

/* The handler's standard output (its result) is refused beyond this size. */
#define MAX_OUTPUT		(16 * 1024 * 1024)
/* The end of the handler's standard error kept as the error of a failure. */
#define MAX_STDERR		4096
/* After SIGTERM (timeout, lost lease), a handler gets this long before SIGKILL. */
#define KILL_GRACE_MS	5000
/* Reconnection delays double from the first to the last. */
#define RECONNECT_MIN_MS	500
#define RECONNECT_MAX_MS	30000
/* Transient errors of a claim (deadlock, serialization, resources): retry after. */
#define RETRY_MS		1000

typedef enum SlotState
{
	SLOT_FREE,					/* no step */
	SLOT_RUNNING,				/* the handler runs (or its pipes are open) */
	SLOT_REPORT					/* the handler has ended: result to report */
} SlotState;

/* Bytes read from a pipe. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		truncated;		/* stderr: the beginning was dropped */
} Buf;

typedef struct Slot
{
	SlotState	state;
	pid_t		pid;			/* handler and its process group; 0 once reaped */
	int			in_fd;			/* its stdin (write end), -1 when closed */
	int			out_fd;			/* its stdout (read end) */
	int			err_fd;			/* its stderr (read end) */
	char	   *input;			/* the step's input, written to in_fd */
	size_t		input_len;
	size_t		input_off;
	Buf			out;
	Buf			err;
	/* the claimed step */
	char	   *run_id;
	char	   *step;
	char	   *token;
	char	   *workflow;
	int			attempt;
	/* times, ms of the monotonic clock */
	int64		started;
	int64		next_heartbeat;
	int64		timeout_at;		/* 0: none */
	int64		kill_at;		/* SIGKILL then (after a SIGTERM); 0: none */
	/* how it ended */
	int			wait_status;
	bool		lease_lost;		/* heartbeat said the lease is gone: report nothing */
	bool		timed_out;
	bool		too_large;
	bool		shutdown_killed;
} Slot;

static const char *progname;

/* options */
static const char *conninfo = NULL;
static const char *queue = NULL;
static int	concurrency = 1;
static int64 lease_ms = 0;		/* 0: the server's orchestrator.default_lease */
static int64 timeout_ms = -1;	/* -1: the server's orchestrator.max_step_timeout; 0: none */
static int64 poll_ms = 5000;
static int64 grace_ms = 30000;
static char *worker_name = NULL;
static bool verbose = false;
static char **handler_argv;

/* state */
static PGconn *conn = NULL;
static int64 effective_lease_ms;	/* the lease the claims get */
static int64 effective_timeout_ms;	/* 0: none */
static Slot *slots;
static bool want_claim = true;
static int64 next_claim = 0;
static int64 reconnect_at = 0;
static int64 reconnect_delay = RECONNECT_MIN_MS;
static bool stopping = false;
static int64 stop_deadline = 0;
static int	exit_code = 0;

static volatile sig_atomic_t stop_signals = 0;
static int	self_pipe[2] = {-1, -1};

static int64
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
wake_self(void)
{
	int			save_errno = errno;
	char		c = 0;

	if (write(self_pipe[1], &c, 1) < 0)
	{
		/* full: a wake-up is pending anyway */
	}
	errno = save_errno;
}

static void
on_stop_signal(int signo)
{
	stop_signals++;
	wake_self();
}

static void
on_sigchld(int signo)
{
	wake_self();
}

static void
usage(void)
{
	printf("%s runs a command for each external step claimed from an orchestrator queue.\n\n", progname);
	printf("Usage:\n");
	printf("  %s [OPTION]... --queue=QUEUE -- COMMAND [ARG]...\n\n", progname);
	printf("The command gets the step's input JSON on standard input and\n"
		   "ORCHESTRATOR_RUN_ID, ORCHESTRATOR_STEP, ORCHESTRATOR_ATTEMPT, ORCHESTRATOR_WORKFLOW,\n"
		   "ORCHESTRATOR_QUEUE and TRACEPARENT (when known) in its environment.  Its standard\n"
		   "output (JSON; empty: null) completes the step; a non-zero exit fails it with the\n"
		   "end of its standard error as the error.\n\n");
	printf("Options:\n");
	printf("  -d, --dbname=CONNINFO        database to connect to (name, connection string or URI)\n");
	printf("  -q, --queue=QUEUE            queue whose steps to claim (required)\n");
	printf("  -c, --concurrency=N          run up to N handlers at once (default: 1)\n");
	printf("  -l, --lease=DURATION         lease of a claimed step, renewed while the handler\n"
		   "                               runs (default: orchestrator.default_lease)\n");
	printf("  -t, --timeout=DURATION       longest run of one handler, 0 for none\n"
		   "                               (default: orchestrator.max_step_timeout)\n");
	printf("      --poll-interval=DURATION claim at least this often, notified or not\n"
		   "                               (default: 5s)\n");
	printf("      --grace=DURATION         on SIGTERM or SIGINT, wait this long for running\n"
		   "                               handlers before killing them (default: 30s)\n");
	printf("  -n, --name=NAME              worker name recorded with each claim (default: host:pid)\n");
	printf("  -v, --verbose                report each step on standard error\n");
	printf("  -V, --version                output version information, then exit\n");
	printf("  -?, --help                   show this help, then exit\n\n");
	printf("A DURATION is a number with an optional unit: ms, s, min, h or d (default: s).\n");
	printf("Connection parameters not in CONNINFO come from the PG* environment variables.\n\n");
	printf("Exit status: 0 after a stop by SIGTERM or SIGINT with every result reported,\n"
		   "1 on bad usage, a failed first connection or an error of the server.\n");
}

static void
bad_usage(const char *fmt, const char *arg)
{
	pg_log_error(fmt, arg);
	pg_log_error_hint("Try \"%s --help\" for more information.", progname);
	exit(1);
}

/*
 * A duration: a number, optional white space, an optional unit (ms, s, min,
 * h, d and their long forms; none means seconds).  False when malformed.
 */
static bool
parse_duration(const char *s, int64 *ms)
{
	static const struct
	{
		const char *name;
		double		ms;
	}			units[] = {
		{"ms", 1}, {"msec", 1}, {"millisecond", 1}, {"milliseconds", 1},
		{"", 1000}, {"s", 1000}, {"sec", 1000}, {"secs", 1000}, {"second", 1000}, {"seconds", 1000},
		{"min", 60000}, {"mins", 60000}, {"minute", 60000}, {"minutes", 60000},
		{"h", 3600000}, {"hour", 3600000}, {"hours", 3600000},
		{"d", 86400000}, {"day", 86400000}, {"days", 86400000},
	};
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno != 0 || v < 0 || v != v)
		return false;
	while (*end == ' ')
		end++;
	for (size_t i = 0; i < lengthof(units); i++)
	{
		if (strcmp(end, units[i].name) == 0)
		{
			double		r = v * units[i].ms;

			if (r > (double) PG_INT64_MAX / 2)
				return false;
			*ms = (int64) (r + 0.5);
			return true;
		}
	}
	return false;
}

static void
parse_options(int argc, char **argv)
{
	static struct option long_options[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"queue", required_argument, NULL, 'q'},
		{"concurrency", required_argument, NULL, 'c'},
		{"lease", required_argument, NULL, 'l'},
		{"timeout", required_argument, NULL, 't'},
		{"poll-interval", required_argument, NULL, 1},
		{"grace", required_argument, NULL, 2},
		{"name", required_argument, NULL, 'n'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, '?'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	int			optindex;

	if (argc > 1)
	{
		if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-?") == 0)
		{
			usage();
			exit(0);
		}
		if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		{
			printf("%s (orchestrator) %s\n", progname, ORCHESTRATOR_VERSION);
			exit(0);
		}
	}

	/* "+": stop at the first non-option, the handler's own options are its own */
	while ((c = getopt_long(argc, argv, "+d:q:c:l:t:n:vV?", long_options, &optindex)) != -1)
	{
		char	   *end;
		long		n;

		switch (c)
		{
			case 'd':
				conninfo = optarg;
				break;
			case 'q':
				queue = optarg;
				break;
			case 'c':
				errno = 0;
				n = strtol(optarg, &end, 10);
				if (*optarg == '\0' || *end != '\0' || errno != 0 || n < 1 || n > 1000)
					bad_usage("--concurrency must be a number from 1 to 1000, not \"%s\"", optarg);
				concurrency = (int) n;
				break;
			case 'l':
				if (!parse_duration(optarg, &lease_ms) || lease_ms < 1000 || lease_ms > 86400000)
					bad_usage("--lease must be a duration from 1s to 1d, not \"%s\"", optarg);
				break;
			case 't':
				if (!parse_duration(optarg, &timeout_ms))
					bad_usage("--timeout must be a duration (0 for none), not \"%s\"", optarg);
				break;
			case 1:
				if (!parse_duration(optarg, &poll_ms) || poll_ms < 10)
					bad_usage("--poll-interval must be a duration of 10ms or more, not \"%s\"", optarg);
				break;
			case 2:
				if (!parse_duration(optarg, &grace_ms))
					bad_usage("--grace must be a duration, not \"%s\"", optarg);
				break;
			case 'n':
				if (strlen(optarg) < 1 || strlen(optarg) > 255)
					bad_usage("--name must be 1 to 255 characters, not \"%s\"", optarg);
				worker_name = pg_strdup(optarg);
				break;
			case 'v':
				verbose = true;
				break;
			case 'V':
				printf("%s (orchestrator) %s\n", progname, ORCHESTRATOR_VERSION);
				exit(0);
			default:
				/* getopt_long printed the problem */
				pg_log_error_hint("Try \"%s --help\" for more information.", progname);
				exit(1);
		}
	}

	if (queue == NULL)
		bad_usage("no queue given: use --queue%s", "");
	if (optind >= argc)
		bad_usage("no handler command given: put it after \"--\"%s", "");
	handler_argv = &argv[optind];

	if (worker_name == NULL)
	{
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		worker_name = psprintf("%s:%d", host, (int) getpid());
	}
}

/* ---------------------------------------------------------------------- */
/* Buffers */

static void
buf_append(Buf *b, const char *data, size_t n, size_t keep_tail)
{
	if (keep_tail > 0 && b->len + n > 2 * keep_tail)
	{
		/* keep only the last keep_tail bytes of what was and what comes */
		if (n >= keep_tail)
		{
			data += n - keep_tail;
			n = keep_tail;
			b->len = 0;
		}
		else
		{
			size_t		keep = keep_tail - n;

			if (b->len > keep)
			{
				memmove(b->data, b->data + b->len - keep, keep);
				b->len = keep;
			}
		}
		b->truncated = true;
	}
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = Max(b->cap * 2, b->len + n + 1);

		cap = Max(cap, 1024);
		b->data = pg_realloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
buf_free(Buf *b)
{
	if (b->data)
		pg_free(b->data);
	memset(b, 0, sizeof(*b));
}

/*
 * Text for the server (client_encoding UTF8): the last max bytes of b, with
 * bytes that are not valid UTF-8 (and NULs) replaced by '?'.
 */
static char *
utf8_text(const Buf *b, size_t max)
{
	const unsigned char *s = (const unsigned char *) (b->data ? b->data : "");
	size_t		len = b->len;
	size_t		start = len > max ? len - max : 0;
	char	   *r = pg_malloc(len - start + 4);
	size_t		o = 0;
	size_t		i = start;

	if (b->truncated || start > 0)
	{
		/* skip continuation bytes of a character cut in two */
		while (i < len && (s[i] & 0xC0) == 0x80)
			i++;
	}
	while (i < len)
	{
		unsigned char c = s[i];
		int			n;

		if (c == 0)
			n = -1;
		else if (c < 0x80)
			n = 1;
		else if ((c & 0xE0) == 0xC0 && c >= 0xC2)
			n = 2;
		else if ((c & 0xF0) == 0xE0)
			n = 3;
		else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
			n = 4;
		else
			n = -1;
		if (n > 1)
		{
			if (i + n > len)
				n = -1;
			else
				for (int k = 1; k < n; k++)
					if ((s[i + k] & 0xC0) != 0x80)
						n = -1;
			/* overlong 3-byte forms, surrogates, beyond U+10FFFF */
			if (n == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0)))
				n = -1;
			if (n == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90)))
				n = -1;
		}
		if (n < 0)
		{
			r[o++] = '?';
			i++;
		}
		else
		{
			memcpy(r + o, s + i, n);
			o += n;
			i += n;
		}
	}
	r[o] = '\0';
	return r;
}

/* ---------------------------------------------------------------------- */
/* The connection */

static void
lose_connection(const char *what)
{
	int64		now = now_ms();

	if (strcmp(what, "connecting") == 0)
		pg_log_warning("could not connect to server: %s", conn ? PQerrorMessage(conn) : "out of memory");
	else
		pg_log_warning("connection to server lost while %s: %s", what,
					   conn ? PQerrorMessage(conn) : "");
	pg_log_warning_detail("Trying again in %.1f s; running handlers go on.",
						  reconnect_delay / 1000.0);
	if (conn)
		PQfinish(conn);
	conn = NULL;
	reconnect_at = now + reconnect_delay;
	reconnect_delay = Min(reconnect_delay * 2, RECONNECT_MAX_MS);
}

/* An error that stops the worker (after its running handlers end). */
static void
fatal_result(const char *what, PGresult *res)
{
	pg_log_error("%s failed: %s", what, PQresultErrorMessage(res));
	if (!stopping)
	{
		stopping = true;
		stop_deadline = now_ms() + grace_ms;
	}
	exit_code = 1;
}

/*
 * Run a query.  NULL when the connection is lost (conn is then NULL); else
 * the result, which the caller checks and clears.
 */
static PGresult *
query(const char *what, const char *sql, int nparams, const char *const *values)
{
	PGresult   *res;

	if (conn == NULL)
		return NULL;
	res = PQexecParams(conn, sql, nparams, NULL, values, NULL, NULL, 0);
	if (PQstatus(conn) == CONNECTION_BAD)
	{
		PQclear(res);
		lose_connection(what);
		return NULL;
	}
	return res;
}

/*
 * Connect, LISTEN, learn the lease and timeout the server applies.  At
 * start (first) a failure ends the program; later it schedules a retry.
 */
static bool
connect_db(bool first)
{
	/* CONNINFO overrides the keywords before it, not those after it */
	const char *keywords[] = {"connect_timeout", "fallback_application_name", "dbname", "client_encoding", NULL};
	const char *values[] = {"10", "orchestrator-worker", conninfo, "UTF8", NULL};
	PGresult   *res;

	conn = PQconnectdbParams(keywords, values, true);
	if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
	{
		if (first)
		{
			pg_log_error("%s", conn ? PQerrorMessage(conn) : "out of memory");
			exit(1);
		}
		lose_connection("connecting");
		return false;
	}

	res = PQexec(conn,
				 "SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'orchestrator'),"
				 " pg_catalog.current_database(),"
				 " (extract(epoch FROM pg_catalog.current_setting('orchestrator.default_lease', true)::interval) * 1000)::bigint,"
				 " (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'orchestrator.max_step_timeout')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (PQstatus(conn) == CONNECTION_BAD && !first)
		{
			PQclear(res);
			lose_connection("connecting");
			return false;
		}
		pg_log_error("could not read the orchestrator settings: %s", PQerrorMessage(conn));
		exit(1);
	}
	if (PQgetisnull(res, 0, 0))
	{
		pg_log_error("extension \"orchestrator\" is not installed in database \"%s\"", PQgetvalue(res, 0, 1));
		pg_log_error_hint("Connect to the database where CREATE EXTENSION orchestrator was run.");
		exit(1);
	}
	effective_lease_ms = lease_ms > 0 ? lease_ms :
		(PQgetisnull(res, 0, 2) ? 300000 : strtoll(PQgetvalue(res, 0, 2), NULL, 10));
	if (timeout_ms >= 0)
		effective_timeout_ms = timeout_ms;
	else
		effective_timeout_ms = PQgetisnull(res, 0, 3) ? 0 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	PQclear(res);

	res = PQexec(conn, "LISTEN orchestrator_queue");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		if (PQstatus(conn) == CONNECTION_BAD && !first)
		{
			PQclear(res);
			lose_connection("connecting");
			return false;
		}
		pg_log_error("could not listen: %s", PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);

	if (!first)
		pg_log_info("connected again");
	reconnect_delay = RECONNECT_MIN_MS;
	/* steps may have become ready unannounced; leases need renewing */
	want_claim = true;
	next_claim = 0;
	for (int i = 0; i < concurrency; i++)
		if (slots[i].state == SLOT_RUNNING)
			slots[i].next_heartbeat = 0;
	return true;
}

/* Take the notifications that arrived; wake the claim loop on ours. */
static void
read_notifications(void)
{
	PGnotify   *n;

	if (conn == NULL)
		return;
	if (!PQconsumeInput(conn))
	{
		lose_connection("waiting for notifications");
		return;
	}
	while ((n = PQnotifies(conn)) != NULL)
	{
		if (strcmp(n->relname, "orchestrator_queue") == 0 && strcmp(n->extra, queue) == 0)
			want_claim = true;
		PQfreemem(n);
	}
}

/* ---------------------------------------------------------------------- */
/* Handlers */

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
	{
		pg_log_error("could not set a pipe non-blocking: %m");
		exit(1);
	}
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void
slot_reset(Slot *s)
{
	close_fd(&s->in_fd);
	close_fd(&s->out_fd);
	close_fd(&s->err_fd);
	buf_free(&s->out);
	buf_free(&s->err);
	if (s->input)
		pg_free(s->input);
	if (s->run_id)
		pg_free(s->run_id);
	if (s->step)
		pg_free(s->step);
	if (s->token)
		pg_free(s->token);
	if (s->workflow)
		pg_free(s->workflow);
	memset(s, 0, sizeof(*s));
	s->in_fd = s->out_fd = s->err_fd = -1;
	s->state = SLOT_FREE;
}

/* In the child: put fd on target, without close-on-exec. */
static void
child_dup(int fd, int target)
{
	if (fd == target)
		fcntl(fd, F_SETFD, 0);
	else if (dup2(fd, target) < 0)
		_exit(127);
}

/* Start the handler for the step in s; false (errno set) when it could not. */
static bool
spawn(Slot *s, const char *traceparent)
{
	int			in[2],
				out[2],
				err[2];
	pid_t		pid;
	pid_t		parent = getpid();
	char		attempt[16];

	if (pipe2(in, O_CLOEXEC) < 0)
		return false;
	if (pipe2(out, O_CLOEXEC) < 0)
	{
		close(in[0]);
		close(in[1]);
		return false;
	}
	if (pipe2(err, O_CLOEXEC) < 0)
	{
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return false;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
	{
		int			save = errno;

		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		close(err[0]);
		close(err[1]);
		errno = save;
		return false;
	}
	if (pid == 0)
	{
		sigset_t	none;

		/* a group of its own: a terminal's ^C is for the worker, not the handler */
		setpgid(0, 0);
#ifdef __linux__
		/* killed with the worker (kill -9): nobody would take its result */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(127);
#endif
		child_dup(in[0], 0);
		child_dup(out[1], 1);
		child_dup(err[1], 2);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		snprintf(attempt, sizeof(attempt), "%d", s->attempt);
		setenv("ORCHESTRATOR_RUN_ID", s->run_id, 1);
		setenv("ORCHESTRATOR_STEP", s->step, 1);
		setenv("ORCHESTRATOR_ATTEMPT", attempt, 1);
		setenv("ORCHESTRATOR_WORKFLOW", s->workflow ? s->workflow : "", 1);
		setenv("ORCHESTRATOR_QUEUE", queue, 1);
		if (traceparent)
			setenv("TRACEPARENT", traceparent, 1);
		else
			unsetenv("TRACEPARENT");
		execvp(handler_argv[0], handler_argv);
		fprintf(stderr, "%s: could not execute \"%s\": %s\n", progname, handler_argv[0], strerror(errno));
		_exit(127);
	}
	/* both sides set the group: no race with a kill right after fork */
	setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	s->pid = pid;
	s->in_fd = in[1];
	s->out_fd = out[0];
	s->err_fd = err[0];
	set_nonblocking(s->in_fd);
	set_nonblocking(s->out_fd);
	set_nonblocking(s->err_fd);
	return true;
}

static void
kill_handler(Slot *s, int sig)
{
	if (s->pid > 0)
		kill(-s->pid, sig);
}

/* Read what a pipe holds now; false at end of file. */
static bool
drain(Slot *s, int *fd, bool is_out)
{
	char		chunk[8192];

	for (;;)
	{
		ssize_t		n = read(*fd, chunk, sizeof(chunk));

		if (n > 0)
		{
			if (is_out)
			{
				if (s->too_large)
					continue;
				if (s->out.len + n > MAX_OUTPUT)
				{
					s->too_large = true;
					kill_handler(s, SIGKILL);
					continue;
				}
				buf_append(&s->out, chunk, n, 0);
			}
			else
				buf_append(&s->err, chunk, n, MAX_STDERR);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		close_fd(fd);
		return false;
	}
}

static void
write_input(Slot *s)
{
	while (s->input_off < s->input_len)
	{
		ssize_t		n = write(s->in_fd, s->input + s->input_off, s->input_len - s->input_off);

		if (n > 0)
		{
			s->input_off += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		/* EPIPE: the handler does not read its input; that is its business */
		break;
	}
	close_fd(&s->in_fd);
}

/* Reap ended handlers; their slot then has a result to report. */
static void
reap(void)
{
	for (;;)
	{
		int			status;
		pid_t		pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0)
			break;
		for (int i = 0; i < concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state == SLOT_RUNNING && s->pid == pid)
			{
				s->wait_status = status;
				/* what it wrote before it ended is in the pipes */
				if (s->out_fd >= 0)
					drain(s, &s->out_fd, true);
				if (s->err_fd >= 0)
					drain(s, &s->err_fd, false);
				close_fd(&s->in_fd);
				close_fd(&s->out_fd);
				close_fd(&s->err_fd);
				/* kill what it left behind in its group */
				kill(-pid, SIGKILL);
				s->pid = 0;
				s->state = SLOT_REPORT;
				break;
			}
		}
	}
}

/* ---------------------------------------------------------------------- */
/* The SQL calls */

static void
claim(void)
{
	int			free_slots = 0;
	char		max_steps[16];
	char		lease[32];
	const char *values[4];
	PGresult   *res;
	int			c_run,
				c_step,
				c_attempt,
				c_token,
				c_input,
				c_workflow,
				c_traceparent;
	int			n;
	int64		now = now_ms();

	for (int i = 0; i < concurrency; i++)
		if (slots[i].state == SLOT_FREE)
			free_slots++;
	if (free_slots == 0)
		return;

	snprintf(max_steps, sizeof(max_steps), "%d", free_slots);
	snprintf(lease, sizeof(lease), "%lld milliseconds", (long long) effective_lease_ms);
	values[0] = queue;
	values[1] = worker_name;
	values[2] = max_steps;
	values[3] = lease;
	next_claim = now + poll_ms;
	res = query("claiming steps",
				"SELECT * FROM orchestrator.claim_steps($1, $2, $3::integer, $4::interval)", 4, values);
	if (res == NULL)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* deadlock, serialization, resources, operator intervention: later */
		if (state && (strncmp(state, "40", 2) == 0 || strncmp(state, "53", 2) == 0 ||
					  strncmp(state, "57", 2) == 0))
		{
			pg_log_warning("claiming steps failed: %s", PQresultErrorMessage(res));
			next_claim = now + RETRY_MS;
			want_claim = false;
		}
		else
			fatal_result("claiming steps", res);
		PQclear(res);
		return;
	}

	/* by name: newer versions add columns (traceparent) */
	c_run = PQfnumber(res, "run_id");
	c_step = PQfnumber(res, "step");
	c_attempt = PQfnumber(res, "attempt");
	c_token = PQfnumber(res, "lease_token");
	c_input = PQfnumber(res, "input");
	c_workflow = PQfnumber(res, "workflow");
	c_traceparent = PQfnumber(res, "traceparent");
	if (c_run < 0 || c_step < 0 || c_attempt < 0 || c_token < 0 || c_input < 0)
	{
		pg_log_error("claim_steps() returned no column run_id, step, attempt, lease_token or input");
		PQclear(res);
		exit(1);
	}

	n = PQntuples(res);
	/* fewer than asked: the queue is empty for now (expired leases count too) */
	want_claim = (n == free_slots);
	for (int r = 0, i = 0; r < n; r++)
	{
		Slot	   *s;
		const char *tp = NULL;

		while (slots[i].state != SLOT_FREE)
			i++;
		s = &slots[i];
		s->run_id = pg_strdup(PQgetvalue(res, r, c_run));
		s->step = pg_strdup(PQgetvalue(res, r, c_step));
		s->token = pg_strdup(PQgetvalue(res, r, c_token));
		s->attempt = atoi(PQgetvalue(res, r, c_attempt));
		if (c_workflow >= 0 && !PQgetisnull(res, r, c_workflow))
			s->workflow = pg_strdup(PQgetvalue(res, r, c_workflow));
		if (c_traceparent >= 0 && !PQgetisnull(res, r, c_traceparent))
			tp = PQgetvalue(res, r, c_traceparent);
		s->input = pg_strdup(PQgetisnull(res, r, c_input) ? "null" : PQgetvalue(res, r, c_input));
		s->input_len = strlen(s->input);
		s->started = now;
		s->next_heartbeat = now + Max(effective_lease_ms / 3, 200);
		s->timeout_at = effective_timeout_ms > 0 ? now + effective_timeout_ms : 0;
		if (spawn(s, tp))
		{
			s->state = SLOT_RUNNING;
			write_input(s);
			if (verbose)
				pg_log_info("step \"%s\" of run %s (attempt %d): handler %d started",
							s->step, s->run_id, s->attempt, (int) s->pid);
		}
		else
		{
			/* reported as a failure: the step is retried, here or elsewhere */
			const char *msg = strerror(errno);

			pg_log_warning("could not start the handler: %s", msg);
			buf_append(&s->err, msg, strlen(msg), MAX_STDERR);
			s->wait_status = -1;
			s->state = SLOT_REPORT;
		}
	}
	PQclear(res);
}

static void
heartbeat(Slot *s)
{
	const char *values[3] = {s->run_id, s->step, s->token};
	PGresult   *res;
	int64		now = now_ms();

	s->next_heartbeat = now + Max(effective_lease_ms / 3, 200);
	res = query("renewing a lease",
				"SELECT orchestrator.heartbeat_step($1, $2, $3)", 3, values);
	if (res == NULL)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		pg_log_warning("heartbeat of step \"%s\" of run %s failed: %s",
					   s->step, s->run_id, PQresultErrorMessage(res));
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0 && !s->lease_lost)
	{
		/* expired, superseded, or the run has ended: the work is not wanted */
		pg_log_warning("lease of step \"%s\" of run %s is lost: stopping its handler",
					   s->step, s->run_id);
		s->lease_lost = true;
		kill_handler(s, SIGTERM);
		s->kill_at = now + KILL_GRACE_MS;
	}
	PQclear(res);
}

/* Report a failed attempt; false when the connection was lost. */
static bool
report_failure(Slot *s, const char *message, int exit_status, int signo)
{
	char		code[16],
				sig[16];
	char	   *err = utf8_text(&s->err, MAX_STDERR);
	const char *values[8];
	PGresult   *res;

	snprintf(code, sizeof(code), "%d", exit_status);
	snprintf(sig, sizeof(sig), "%d", signo);
	values[0] = s->run_id;
	values[1] = s->step;
	values[2] = s->token;
	values[3] = message;
	values[4] = exit_status >= 0 ? code : NULL;
	values[5] = signo > 0 ? sig : NULL;
	values[6] = s->err.len > 0 ? err : NULL;
	values[7] = worker_name;
	res = query("reporting a failure",
				"SELECT orchestrator.fail_step($1, $2, $3, jsonb_strip_nulls(jsonb_build_object("
				"'message', $4::text, 'exit_code', $5::integer, 'signal', $6::integer,"
				" 'stderr', $7::text, 'worker', $8::text)), true)", 8, values);
	pg_free(err);
	if (res == NULL)
		return false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		pg_log_error("could not record the failure of step \"%s\" of run %s: %s",
					 s->step, s->run_id, PQresultErrorMessage(res));
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		pg_log_warning("step \"%s\" of run %s: lease lost before the failure was recorded",
					   s->step, s->run_id);
	else if (verbose)
		pg_log_info("step \"%s\" of run %s (attempt %d): failed: %s",
					s->step, s->run_id, s->attempt, message);
	PQclear(res);
	return true;
}

/* Report what the ended handler of s did; false when the connection was lost. */
static bool
report(Slot *s)
{
	int			st = s->wait_status;
	char	   *msg;
	bool		ok;

	if (s->lease_lost)
	{
		if (verbose)
			pg_log_info("step \"%s\" of run %s (attempt %d): lease lost, result not reported",
						s->step, s->run_id, s->attempt);
		return true;
	}
	if (s->too_large)
		msg = psprintf("handler output is larger than %d bytes", MAX_OUTPUT);
	else if (s->timed_out)
		msg = psprintf("handler timed out after %.3f s", effective_timeout_ms / 1000.0);
	else if (s->shutdown_killed)
		msg = psprintf("handler killed: the worker was stopped and its grace of %.3f s ran out",
					   grace_ms / 1000.0);
	else if (st == -1)
		msg = psprintf("could not start the handler");
	else if (WIFSIGNALED(st))
		msg = psprintf("handler was terminated by signal %d: %s", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
		msg = psprintf("handler exited with status %d", WEXITSTATUS(st));
	else
		msg = NULL;

	if (msg == NULL)
	{
		/* exit 0: its output is the result */
		const char *values[4] = {s->run_id, s->step, s->token, NULL};
		PGresult   *res;
		char	   *p = s->out.data ? s->out.data : "";
		bool		blank = true;

		for (size_t i = 0; i < s->out.len; i++)
			if (!(p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
				blank = false;
		if (memchr(p, '\0', s->out.len) != NULL)
		{
			msg = psprintf("handler output is not JSON: it contains a zero byte");
			ok = report_failure(s, msg, 0, 0);
			pg_free(msg);
			return ok;
		}
		values[3] = blank ? "null" : p;
		res = query("completing a step",
					"SELECT orchestrator.complete_step($1, $2, $3, $4::jsonb)", 4, values);
		if (res == NULL)
			return false;
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
				pg_log_warning("step \"%s\" of run %s: lease lost before the result was recorded",
							   s->step, s->run_id);
			else if (verbose)
				pg_log_info("step \"%s\" of run %s (attempt %d): completed",
							s->step, s->run_id, s->attempt);
			PQclear(res);
			return true;
		}
		/* not JSON (22P02), not UTF-8 (22021), too deep (54001)...: a failure */
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			if (state == NULL || (strncmp(state, "22", 2) != 0 && strncmp(state, "54", 2) != 0))
			{
				/* refused for another reason (rights revoked...): the lease will expire */
				pg_log_error("could not complete step \"%s\" of run %s: %s",
							 s->step, s->run_id, PQresultErrorMessage(res));
				PQclear(res);
				return true;
			}
		}
		msg = psprintf("handler output is not JSON: %s", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		PQclear(res);
		ok = report_failure(s, msg, 0, 0);
		pg_free(msg);
		return ok;
	}

	ok = report_failure(s, msg,
						st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1,
						st != -1 && WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	pg_free(msg);
	return ok;
}

/* ---------------------------------------------------------------------- */

static int
busy_slots(void)
{
	int			n = 0;

	for (int i = 0; i < concurrency; i++)
		if (slots[i].state != SLOT_FREE)
			n++;
	return n;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
	{
		pg_log_error("could not create a pipe: %m");
		exit(1);
	}
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_stop_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int
main(int argc, char **argv)
{
	struct pollfd *pfds;
	int			seen_signals = 0;

	pg_logging_init(argv[0]);
	progname = get_progname(argv[0]);
	parse_options(argc, argv);

	/* standard descriptors closed: pipes must not take their numbers */
	for (int fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0)
			exit(1);

	slots = pg_malloc0(sizeof(Slot) * concurrency);
	for (int i = 0; i < concurrency; i++)
		slot_reset(&slots[i]);
	pfds = pg_malloc(sizeof(struct pollfd) * (2 + 3 * concurrency));
	setup_signals();

	connect_db(true);
	if (verbose)
		pg_log_info("worker \"%s\" on queue \"%s\": up to %d handlers, lease %.3f s, timeout %.3f s",
					worker_name, queue, concurrency, effective_lease_ms / 1000.0,
					effective_timeout_ms / 1000.0);

	for (;;)
	{
		int64		now;
		int64		wake;
		int			nfds = 0;
		int			conn_index = -1;
		int			timeout;

		reap();
		now = now_ms();

		/* SIGTERM/SIGINT: stop claiming; a second one: stop now */
		if (stop_signals != seen_signals)
		{
			seen_signals = stop_signals;
			if (!stopping)
			{
				stopping = true;
				stop_deadline = now + grace_ms;
				if (verbose || busy_slots() > 0)
					pg_log_info("stopping: waiting up to %.3f s for %d running handlers",
								grace_ms / 1000.0, busy_slots());
			}
			else
				stop_deadline = now;
		}

		/* timeouts, kills */
		for (int i = 0; i < concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state != SLOT_RUNNING || s->pid == 0)
				continue;
			if (s->timeout_at > 0 && now >= s->timeout_at && !s->timed_out && !s->lease_lost)
			{
				s->timed_out = true;
				kill_handler(s, SIGTERM);
				s->kill_at = now + KILL_GRACE_MS;
			}
			if (s->kill_at > 0 && now >= s->kill_at)
			{
				kill_handler(s, SIGKILL);
				s->kill_at = 0;
			}
			if (stopping && now >= stop_deadline && !s->shutdown_killed)
			{
				s->shutdown_killed = true;
				kill_handler(s, SIGKILL);
			}
		}

		/* the connection: open it again, report, renew, claim */
		if (conn == NULL && now >= reconnect_at)
			connect_db(false);
		for (int i = 0; i < concurrency && conn != NULL; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state == SLOT_REPORT)
			{
				if (report(s))
					slot_reset(s);
			}
			else if (s->state == SLOT_RUNNING && !s->lease_lost && now_ms() >= s->next_heartbeat)
				heartbeat(s);
		}
		if (conn != NULL && !stopping && busy_slots() < concurrency &&
			(want_claim || now_ms() >= next_claim))
			claim();

		if (stopping && busy_slots() == 0)
			break;
		if (stopping && conn == NULL && now >= stop_deadline + RECONNECT_MAX_MS)
		{
			/* the server is gone: leases will expire and the steps be retried */
			pg_log_error("could not report the result of %d handlers: giving up", busy_slots());
			exit_code = 1;
			break;
		}

		/* wait for the next thing to happen */
		now = now_ms();
		wake = now + 1000;
		if (conn != NULL && !stopping && busy_slots() < concurrency)
			wake = Min(wake, want_claim ? now : next_claim);
		if (conn == NULL)
			wake = Min(wake, reconnect_at);
		if (stopping)
			wake = Min(wake, stop_deadline);
		pfds[nfds].fd = self_pipe[0];
		pfds[nfds].events = POLLIN;
		nfds++;
		if (conn != NULL && PQsocket(conn) >= 0)
		{
			conn_index = nfds;
			pfds[nfds].fd = PQsocket(conn);
			pfds[nfds].events = POLLIN;
			nfds++;
		}
		for (int i = 0; i < concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state != SLOT_RUNNING)
				continue;
			if (s->in_fd >= 0)
			{
				pfds[nfds].fd = s->in_fd;
				pfds[nfds].events = POLLOUT;
				nfds++;
			}
			if (s->out_fd >= 0)
			{
				pfds[nfds].fd = s->out_fd;
				pfds[nfds].events = POLLIN;
				nfds++;
			}
			if (s->err_fd >= 0)
			{
				pfds[nfds].fd = s->err_fd;
				pfds[nfds].events = POLLIN;
				nfds++;
			}
			if (!s->lease_lost)
				wake = Min(wake, s->next_heartbeat);
			if (s->timeout_at > 0 && !s->timed_out)
				wake = Min(wake, s->timeout_at);
			if (s->kill_at > 0)
				wake = Min(wake, s->kill_at);
		}
		timeout = (int) Max(0, wake - now);
		if (poll(pfds, nfds, timeout) < 0 && errno != EINTR)
		{
			pg_log_error("poll() failed: %m");
			exit(1);
		}

		/* empty the self-pipe; reap() at the top of the loop sees SIGCHLD */
		if (pfds[0].revents)
		{
			char		junk[64];

			while (read(self_pipe[0], junk, sizeof(junk)) > 0)
				;
		}
		if (conn_index >= 0 && pfds[conn_index].revents)
			read_notifications();
		for (int i = 0; i < concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (s->state != SLOT_RUNNING)
				continue;
			/* cheap enough to try them all: non-blocking */
			if (s->in_fd >= 0)
				write_input(s);
			if (s->out_fd >= 0)
				drain(s, &s->out_fd, true);
			if (s->err_fd >= 0)
				drain(s, &s->err_fd, false);
		}
	}

	if (conn != NULL)
		PQfinish(conn);
	if (verbose)
		pg_log_info("stopped");
	return exit_code;
}
