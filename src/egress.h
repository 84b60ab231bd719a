/*-------------------------------------------------------------------------
 *
 * egress.h
 *	  The HTTP egress policy (orchestrator.http_allowed_hosts): which hosts,
 *	  addresses and ports http steps and webhooks may connect to.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_EGRESS_H
#define ORCHESTRATOR_EGRESS_H

#include <sys/socket.h>

#include "utils/guc.h"

/* GUC hooks of orchestrator.http_allowed_hosts: parse once, keep the list. */
extern bool orchestrator_egress_check_hook(char **newval, void **extra,
										   GucSource source);
extern void orchestrator_egress_assign_hook(const char *newval, void *extra);

/*
 * May a URL with this host (lowercase, IPv6 without brackets) and port be
 * used?  default_port is its scheme's (80, 443).  NULL when it may, else
 * why not (palloc'd).
 */
extern char *orchestrator_egress_check_host(const char *host, int port,
											int default_port);

/*
 * May curl connect to this address for a URL of that host?  Never throws
 * (called from libcurl's open-socket callback): false with the reason in
 * msg otherwise.
 */
extern bool orchestrator_egress_check_address(const char *host, int default_port,
											  const struct sockaddr *sa,
											  socklen_t salen,
											  char *msg, size_t msglen);

#endif							/* ORCHESTRATOR_EGRESS_H */
