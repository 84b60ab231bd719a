/*-------------------------------------------------------------------------
 *
 * egress.c
 *	  The HTTP egress policy: orchestrator.http_allowed_hosts, parsed once
 *	  per value by its GUC check hook, and the two checks made with it.
 *
 * Entries, separated by commas:
 *
 *	  *						any host (but see special addresses below)
 *	  api.example.com		that host name
 *	  *.example.com			example.com and every name under it
 *	  192.0.2.10, 2001:db8::1		that IP address
 *	  10.0.0.0/8, fd00::/8	that CIDR range
 *
 * each optionally followed by ":port" or ":*" (IPv6 addresses and ranges
 * are then written in brackets: "[::1]:8080", "[fd00::/8]:*").  An entry
 * without a port allows only the default port of the URL's scheme (80 for
 * http, 443 for https); ":*" allows any port.
 *
 * The checks:
 *
 *	1. of a URL's host and port (orchestrator_egress_check_host), when a
 *	   workflow is defined and again before each request: an IP address
 *	   host must be covered by an IP or CIDR entry (or "*"); a name host by
 *	   a name entry ("*" included).  A name that no name entry allows still
 *	   passes when some CIDR range entry allows its port: it is then judged
 *	   by the addresses it resolves to, in check 2.
 *	2. of every address curl is about to connect to
 *	   (orchestrator_egress_check_address, from libcurl's open-socket
 *	   callback, so after DNS and for every address tried).  Special
 *	   addresses -- loopback, link-local, cloud metadata, unspecified,
 *	   multicast, and their IPv4-mapped IPv6 forms -- are refused unless an
 *	   IP or CIDR entry covers the address and port: a name entry, or "*",
 *	   never leads to them, whatever the name resolves to (DNS rebinding
 *	   included).  Other addresses are allowed when an IP or CIDR entry
 *	   covers them or when a name entry allows the URL's host.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked as their IPv4
 * address, in entries and in hosts alike.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>

#include "egress.h"

/* Longest host name (RFC 1035, without the final dot). */
#define EGRESS_NAME_MAX		253

/* Port of an entry: a number, or one of these. */
#define EGRESS_PORT_DEFAULT	0	/* the URL scheme's default port only */
#define EGRESS_PORT_ANY		(-1)

/* Room for an address with brackets and a port: "[...]:65535". */
#define EGRESS_ADDR_TEXT	(INET6_ADDRSTRLEN + 8)

typedef enum EgressKind
{
	EGRESS_ANY,					/* "*" */
	EGRESS_NAME,				/* "api.example.com" */
	EGRESS_DOMAIN,				/* "*.example.com" */
	EGRESS_ADDRESS				/* an IP address or a CIDR range */
} EgressKind;

typedef struct EgressAddr
{
	int			family;			/* AF_INET or AF_INET6 */
	uint8		bytes[16];		/* network order; AF_INET uses the first 4 */
} EgressAddr;

typedef struct EgressEntry
{
	EgressKind	kind;
	int			port;			/* 1..65535, EGRESS_PORT_DEFAULT or _ANY */
	bool		range;			/* EGRESS_ADDRESS written with "/bits" */
	int			bits;			/* EGRESS_ADDRESS: prefix length */
	EgressAddr	addr;			/* EGRESS_ADDRESS: the network */
	char		name[EGRESS_NAME_MAX + 1];	/* NAME, DOMAIN (without "*.") */
} EgressEntry;

/* The parsed setting: the GUC's "extra", one malloc'd block. */
typedef struct EgressPolicy
{
	int			n;
	EgressEntry entries[FLEXIBLE_ARRAY_MEMBER];
} EgressPolicy;

/* The current value's entries (set by the assign hook). */
static const EgressPolicy *policy = NULL;

/*
 * Addresses no name entry may lead to.  The metadata addresses come first:
 * 169.254.169.254 is link-local too, and the more telling name wins.
 */
typedef struct SpecialRange
{
	int			family;
	uint8		bytes[16];
	int			bits;
	const char *what;
} SpecialRange;

static const SpecialRange special_ranges[] = {
	{AF_INET, {169, 254, 169, 254}, 32, "cloud metadata"},
	{AF_INET, {100, 100, 100, 200}, 32, "cloud metadata"},
	{AF_INET6, {0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54}, 128, "cloud metadata"},
	{AF_INET, {0}, 8, "unspecified"},
	{AF_INET, {127}, 8, "loopback"},
	{AF_INET, {169, 254}, 16, "link-local"},
	{AF_INET, {224}, 4, "multicast"},
	{AF_INET6, {0}, 128, "unspecified"},
	{AF_INET6, {[15] = 1}, 128, "loopback"},
	{AF_INET6, {0xfe, 0x80}, 10, "link-local"},
	{AF_INET6, {0xff}, 8, "multicast"},
};

static const char *const entry_hint =
"Separate entries with commas: host names, \"*.domain\", \"*\", IP addresses "
"or CIDR ranges, each optionally followed by \":port\" or \":*\" (IPv6 then in "
"brackets, as \"[::1]:8080\"); without a port, only the default port of the "
"URL's scheme is allowed.";

/*
 * parse_address
 *		An IPv4 or IPv6 address in text form (inet_pton's strict syntax).
 */
static bool
parse_address(const char *text, EgressAddr *a)
{
	struct in_addr v4;
	struct in6_addr v6;

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, text, &v4) == 1)
	{
		a->family = AF_INET;
		memcpy(a->bytes, &v4, 4);
		return true;
	}
	if (inet_pton(AF_INET6, text, &v6) == 1)
	{
		a->family = AF_INET6;
		memcpy(a->bytes, &v6, 16);
		return true;
	}
	return false;
}

/*
 * unmap_address
 *		An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes its IPv4
 *		address, so that one rule covers both forms.  With bits (a range),
 *		only a range within ::ffff:0:0/96 is converted.
 */
static void
unmap_address(EgressAddr *a, int *bits)
{
	static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a->family != AF_INET6 || memcmp(a->bytes, mapped, 12) != 0 ||
		(bits != NULL && *bits < 96))
		return;
	a->family = AF_INET;
	memmove(a->bytes, a->bytes + 12, 4);
	memset(a->bytes + 4, 0, 12);
	if (bits != NULL)
		*bits -= 96;
}

/*
 * address_in
 *		Is address a in the range net/bits?
 */
static bool
address_in(const EgressAddr *a, const EgressAddr *net, int bits)
{
	int			full = bits / 8;
	int			rest = bits % 8;
	uint8		mask;

	if (a->family != net->family)
		return false;
	if (memcmp(a->bytes, net->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8) (0xff << (8 - rest));
	return (a->bytes[full] & mask) == (net->bytes[full] & mask);
}

/*
 * special_kind
 *		What kind of special address a is ("loopback", ...), NULL for an
 *		ordinary one.
 */
static const char *
special_kind(const EgressAddr *a)
{
	for (size_t i = 0; i < lengthof(special_ranges); i++)
	{
		EgressAddr	net;

		net.family = special_ranges[i].family;
		memcpy(net.bytes, special_ranges[i].bytes, 16);
		if (address_in(a, &net, special_ranges[i].bits))
			return special_ranges[i].what;
	}
	return NULL;
}

/*
 * address_text
 *		a as text into buf, with ":port" when port is not default_port (and
 *		then an IPv6 address in brackets).
 */
static void
address_text(const EgressAddr *a, int port, int default_port, char *buf, size_t len)
{
	char		text[INET6_ADDRSTRLEN];

	if (inet_ntop(a->family, a->bytes, text, sizeof(text)) == NULL)
		strlcpy(text, "?", sizeof(text));
	if (port == default_port)
		snprintf(buf, len, "%s", text);
	else if (a->family == AF_INET6)
		snprintf(buf, len, "[%s]:%d", text, port);
	else
		snprintf(buf, len, "%s:%d", text, port);
}

/*
 * normalize_host
 *		A URL host for matching: lowercase, without one final dot ("a.b." is
 *		"a.b").  False when it is too long to be a host name or address.
 */
static bool
normalize_host(const char *host, char *buf, size_t len)
{
	size_t		n = strlen(host);

	if (n + 1 > len)
		return false;
	for (size_t i = 0; i < n; i++)
		buf[i] = pg_ascii_tolower((unsigned char) host[i]);
	buf[n] = '\0';
	if (n > 1 && buf[n - 1] == '.')
		buf[n - 1] = '\0';
	return true;
}

/*
 * bad_entry
 *		Report an invalid entry from the check hook; returns false.
 */
static bool
bad_entry(const char *entry, const char *why, const char *hint)
{
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("Entry \"%s\" %s.", entry, why);
	GUC_check_errhint("%s", hint ? hint : entry_hint);
	return false;
}

/*
 * check_name
 *		NULL when name is a valid host name (labels of letters, digits, "-"
 *		and "_", 1 to 63 characters each), else what is wrong with it.
 */
static const char *
check_name(const char *name)
{
	size_t		len = strlen(name);
	size_t		label = 0;
	bool		numeric = true;

	if (len == 0)
		return "has an empty host name";
	if (len > EGRESS_NAME_MAX)
		return "has a host name longer than 253 characters";
	for (const char *p = name; *p; p++)
	{
		if (*p == '.')
		{
			if (label == 0)
				return "has an empty label in its host name";
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char) *p) || *p == '-' || *p == '_'))
			return psprintf("has a character \"%c\" that is not allowed in a host name", *p);
		if (!isdigit((unsigned char) *p))
			numeric = false;
		if (++label > 63)
			return "has a label longer than 63 characters in its host name";
	}
	if (label == 0)
		return "has an empty label in its host name";
	if (numeric)
		return "is neither a host name nor a valid IP address";
	return NULL;
}

/*
 * parse_port
 *		"*" or 1..65535.
 */
static bool
parse_port(const char *text, int *port)
{
	long		value = 0;

	if (strcmp(text, "*") == 0)
	{
		*port = EGRESS_PORT_ANY;
		return true;
	}
	if (*text == '\0' || strlen(text) > 5)
		return false;
	for (const char *p = text; *p; p++)
	{
		if (!isdigit((unsigned char) *p))
			return false;
		value = value * 10 + (*p - '0');
	}
	if (value < 1 || value > 65535)
		return false;
	*port = (int) value;
	return true;
}

/*
 * parse_range
 *		An IP address or CIDR range ("10.0.0.0/8") into e.  bracketed: the
 *		entry was written in brackets, so must be IPv6.
 */
static bool
parse_range(const char *entry, char *text, bool bracketed, EgressEntry *e)
{
	char	   *slash = strchr(text, '/');
	int			maxbits;
	EgressAddr	masked;

	if (slash != NULL)
		*slash = '\0';
	if (!parse_address(text, &e->addr))
		return bad_entry(entry, "is not a valid IP address or CIDR range", NULL);
	if (bracketed && e->addr.family != AF_INET6)
		return bad_entry(entry, "has brackets around an IPv4 address",
						 "Brackets are for IPv6 addresses and ranges: \"[::1]:8080\"; write IPv4 as \"127.0.0.1:8080\".");
	maxbits = e->addr.family == AF_INET ? 32 : 128;
	e->bits = maxbits;
	if (slash != NULL)
	{
		const char *b = slash + 1;
		int			bits = 0;

		if (*b == '\0' || strlen(b) > 3)
			return bad_entry(entry, psprintf("has an invalid prefix length (0 to %d)", maxbits), NULL);
		for (; *b; b++)
		{
			if (!isdigit((unsigned char) *b))
				return bad_entry(entry, psprintf("has an invalid prefix length (0 to %d)", maxbits), NULL);
			bits = bits * 10 + (*b - '0');
		}
		if (bits > maxbits)
			return bad_entry(entry, psprintf("has an invalid prefix length (0 to %d)", maxbits), NULL);
		e->bits = bits;
		e->range = true;
	}

	/* no bits set right of the mask: a typo would otherwise widen or move it */
	memset(&masked, 0, sizeof(masked));
	masked.family = e->addr.family;
	memcpy(masked.bytes, e->addr.bytes, e->bits / 8);
	if (e->bits % 8)
		masked.bytes[e->bits / 8] = e->addr.bytes[e->bits / 8] & (uint8) (0xff << (8 - e->bits % 8));
	if (memcmp(masked.bytes, e->addr.bytes, 16) != 0)
	{
		char		net[INET6_ADDRSTRLEN];

		if (inet_ntop(masked.family, masked.bytes, net, sizeof(net)) == NULL)
			strlcpy(net, "?", sizeof(net));
		return bad_entry(entry, psprintf("has bits set to the right of its /%d mask", e->bits),
						 psprintf("Write the network address: \"%s/%d\".", net, e->bits));
	}
	unmap_address(&e->addr, &e->bits);
	e->kind = EGRESS_ADDRESS;
	return true;
}

/*
 * parse_entry
 *		One entry of the list (trimmed, lowercase, modified in place) into e.
 */
static bool
parse_entry(char *text, EgressEntry *e)
{
	const char *entry = pstrdup(text);	/* for messages */
	char	   *host = text;
	char	   *port = NULL;
	bool		bracketed = false;

	memset(e, 0, sizeof(*e));
	e->port = EGRESS_PORT_DEFAULT;

	if (strstr(text, "://") != NULL)
		return bad_entry(entry, "is a URL, not a host", NULL);
	if (text[0] == '[')
	{
		char	   *close = strchr(text, ']');

		if (close == NULL)
			return bad_entry(entry, "lacks its closing \"]\"", NULL);
		*close = '\0';
		host = text + 1;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return bad_entry(entry, "has something other than \":port\" after \"]\"", NULL);
		bracketed = true;
	}
	else
	{
		char	   *colon = strchr(text, ':');

		/* two colons or more: an IPv6 address or range, without a port */
		if (colon != NULL && strchr(colon + 1, ':') == NULL)
		{
			*colon = '\0';
			port = colon + 1;
		}
	}
	if (port != NULL && !parse_port(port, &e->port))
		return bad_entry(entry, psprintf("has an invalid port \"%s\" (1 to 65535, or \"*\" for any)", port), NULL);

	if (bracketed || strchr(host, ':') != NULL || strchr(host, '/') != NULL ||
		strspn(host, "0123456789.") == strlen(host))
		return parse_range(entry, host, bracketed, e);
	if (strcmp(host, "*") == 0)
	{
		e->kind = EGRESS_ANY;
		return true;
	}
	if (strncmp(host, "*.", 2) == 0)
	{
		e->kind = EGRESS_DOMAIN;
		host += 2;
	}
	else
		e->kind = EGRESS_NAME;
	if (strchr(host, '*') != NULL)
		return bad_entry(entry, "has a \"*\" that is not alone nor the start of \"*.domain\"", NULL);
	/* "example.com." is "example.com" */
	if (strlen(host) > 1 && host[strlen(host) - 1] == '.')
		host[strlen(host) - 1] = '\0';
	{
		const char *why = check_name(host);

		if (why != NULL)
			return bad_entry(entry, why, NULL);
	}
	strlcpy(e->name, host, sizeof(e->name));
	return true;
}

/*
 * orchestrator_egress_check_hook
 *		Check hook of orchestrator.http_allowed_hosts: parse every entry,
 *		reporting the first bad one, and hand the parsed list to the assign
 *		hook as "extra" (one malloc'd block, as GUC wants it).
 */
bool
orchestrator_egress_check_hook(char **newval, void **extra, GucSource source)
{
	const char *value = *newval ? *newval : "";
	char	   *copy = pstrdup(value);
	char	   *item;
	int			max = 1;
	EgressPolicy *p;

	for (const char *c = value; *c; c++)
		if (*c == ',')
			max++;
	p = malloc(offsetof(EgressPolicy, entries) + sizeof(EgressEntry) * max);
	if (p == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	p->n = 0;

	item = copy;
	while (item != NULL)
	{
		char	   *next = strchr(item, ',');
		char	   *end;

		if (next != NULL)
			*next++ = '\0';
		while (isspace((unsigned char) *item))
			item++;
		end = item + strlen(item);
		while (end > item && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (*item != '\0')
		{
			for (char *c = item; *c; c++)
			{
				if (isspace((unsigned char) *c))
				{
					free(p);
					return bad_entry(pstrdup(item), "contains white space", NULL);
				}
				*c = pg_ascii_tolower((unsigned char) *c);
			}
			if (!parse_entry(item, &p->entries[p->n]))
			{
				free(p);
				return false;
			}
			p->n++;
		}
		item = next;
	}
	pfree(copy);
	*extra = p;
	return true;
}

/*
 * orchestrator_egress_assign_hook
 *		The setting changed (or a change was undone): use its entries.
 */
void
orchestrator_egress_assign_hook(const char *newval, void *extra)
{
	policy = (const EgressPolicy *) extra;
}

/*
 * port_allowed
 *		Does entry e allow this port of a URL whose scheme defaults to
 *		default_port?
 */
static bool
port_allowed(const EgressEntry *e, int port, int default_port)
{
	if (e->port == EGRESS_PORT_ANY)
		return true;
	if (e->port == EGRESS_PORT_DEFAULT)
		return port == default_port;
	return port == e->port;
}

/*
 * address_listed
 *		Does an IP or CIDR entry allow address a on this port?
 */
static bool
address_listed(const EgressAddr *a, int port, int default_port)
{
	if (policy == NULL)
		return false;
	for (int i = 0; i < policy->n; i++)
	{
		const EgressEntry *e = &policy->entries[i];

		if (e->kind == EGRESS_ADDRESS && address_in(a, &e->addr, e->bits) &&
			port_allowed(e, port, default_port))
			return true;
	}
	return false;
}

/*
 * name_listed
 *		Does a name entry allow host (normalised) on this port?  For a host
 *		that is an IP address only "*" counts.
 */
static bool
name_listed(const char *host, bool is_address, int port, int default_port)
{
	size_t		hlen = strlen(host);

	if (policy == NULL)
		return false;
	for (int i = 0; i < policy->n; i++)
	{
		const EgressEntry *e = &policy->entries[i];
		bool		match;

		switch (e->kind)
		{
			case EGRESS_ANY:
				match = true;
				break;
			case EGRESS_NAME:
				match = !is_address && strcmp(host, e->name) == 0;
				break;
			case EGRESS_DOMAIN:
				{
					size_t		dlen = strlen(e->name);

					/* the domain itself, or a name ending in ".domain" */
					match = !is_address &&
						(strcmp(host, e->name) == 0 ||
						 (hlen > dlen && host[hlen - dlen - 1] == '.' &&
						  strcmp(host + hlen - dlen, e->name) == 0));
					break;
				}
			default:
				match = false;
				break;
		}
		if (match && port_allowed(e, port, default_port))
			return true;
	}
	return false;
}

/*
 * range_allows_port
 *		Is there a CIDR range entry for this port?  A name host no name
 *		entry allows may then still resolve to an allowed address.
 */
static bool
range_allows_port(int port, int default_port)
{
	if (policy == NULL)
		return false;
	for (int i = 0; i < policy->n; i++)
	{
		const EgressEntry *e = &policy->entries[i];

		if (e->kind == EGRESS_ADDRESS && e->range && port_allowed(e, port, default_port))
			return true;
	}
	return false;
}

/*
 * orchestrator_egress_check_host
 *		The URL-level check (see the file header).  NULL when host:port may
 *		be used, else why not.
 */
char *
orchestrator_egress_check_host(const char *host, int port, int default_port)
{
	char		name[EGRESS_NAME_MAX + 2];
	char		shown[EGRESS_NAME_MAX + 16];
	EgressAddr	a;
	bool		is_address;

	if (!normalize_host(host, name, sizeof(name)))
		return psprintf("host \"%.64s...\" is not in orchestrator.http_allowed_hosts", host);
	is_address = parse_address(name, &a);
	if (is_address)
	{
		const char *what;

		unmap_address(&a, NULL);
		if (address_listed(&a, port, default_port))
			return NULL;
		what = special_kind(&a);
		if (what != NULL)
		{
			/* "*" does not count: only an IP or CIDR entry allows these */
			address_text(&a, port, default_port, shown, sizeof(shown));
			return psprintf("address %s (%s) is not allowed: only an IP or CIDR entry of orchestrator.http_allowed_hosts can allow it",
							shown, what);
		}
	}
	if (name_listed(name, is_address, port, default_port))
		return NULL;
	/* judged by the addresses it resolves to, when connecting */
	if (!is_address && range_allows_port(port, default_port))
		return NULL;

	if (is_address)
		address_text(&a, port, default_port, shown, sizeof(shown));
	else if (port == default_port)
		snprintf(shown, sizeof(shown), "%s", name);
	else
		snprintf(shown, sizeof(shown), "%s:%d", name, port);
	return psprintf("host \"%s\" is not in orchestrator.http_allowed_hosts", shown);
}

/*
 * orchestrator_egress_check_address
 *		The connect-time check (see the file header), for an address curl
 *		is about to connect to for a URL of host (as the URL check saw it)
 *		whose scheme's default port is default_port.  Must not throw: no
 *		palloc, only fixed buffers.
 */
bool
orchestrator_egress_check_address(const char *host, int default_port,
								  const struct sockaddr *sa, socklen_t salen,
								  char *msg, size_t msglen)
{
	char		name[EGRESS_NAME_MAX + 2];
	char		shown[EGRESS_ADDR_TEXT];
	EgressAddr	a;
	EgressAddr	host_addr;
	bool		host_is_address;
	int			port;
	const char *what;

	memset(&a, 0, sizeof(a));
	if (sa->sa_family == AF_INET && salen >= sizeof(struct sockaddr_in))
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

		a.family = AF_INET;
		memcpy(a.bytes, &in->sin_addr, 4);
		port = ntohs(in->sin_port);
	}
	else if (sa->sa_family == AF_INET6 && salen >= sizeof(struct sockaddr_in6))
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

		a.family = AF_INET6;
		memcpy(a.bytes, &in6->sin6_addr, 16);
		port = ntohs(in6->sin6_port);
		unmap_address(&a, NULL);
	}
	else
	{
		snprintf(msg, msglen, "address family %d of host \"%s\" is not allowed",
				 (int) sa->sa_family, host);
		return false;
	}

	if (address_listed(&a, port, default_port))
		return true;

	if (!normalize_host(host, name, sizeof(name)))
		name[0] = '\0';
	host_is_address = parse_address(name, &host_addr);
	address_text(&a, port, default_port, shown, sizeof(shown));
	what = special_kind(&a);
	if (what != NULL)
	{
		if (host_is_address)
			snprintf(msg, msglen,
					 "address %s (%s) is not allowed: only an IP or CIDR entry of orchestrator.http_allowed_hosts can allow it",
					 shown, what);
		else
			snprintf(msg, msglen,
					 "address %s (%s) of host \"%s\" is not allowed: only an IP or CIDR entry of orchestrator.http_allowed_hosts can allow it",
					 shown, what, host);
		return false;
	}
	if (name_listed(name, host_is_address, port, default_port))
		return true;
	if (host_is_address)
		snprintf(msg, msglen, "address %s is not in orchestrator.http_allowed_hosts", shown);
	else
		snprintf(msg, msglen, "address %s of host \"%s\" is not in orchestrator.http_allowed_hosts",
				 shown, host);
	return false;
}
