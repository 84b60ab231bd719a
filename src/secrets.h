/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  Secrets sealed at rest (AES-256-GCM) with a key kept in a file outside
 *	  the database (orchestrator.secret_key_file).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORCHESTRATOR_SECRETS_H
#define ORCHESTRATOR_SECRETS_H

/* Most bytes of a webhook signing key (the base64 after "whsec_"). */
#define WEBHOOK_KEY_MAX_LEN		64

/*
 * Why a secret could not be opened, for callers that must not throw (the
 * dispatcher fails one delivery, not its whole claim).  Strings are palloc'd.
 */
typedef struct SecretError
{
	int			sqlerrcode;
	char	   *message;		/* errmsg: lowercase, no final period */
	char	   *detail;			/* errdetail, or NULL */
	char	   *hint;			/* errhint, or NULL */
} SecretError;

/*
 * Seal len bytes of plaintext: "v1:<key id>:<base64(nonce || ciphertext ||
 * tag)>", palloc'd.  With create_key, a missing key file is created first;
 * without, a missing key file is an error.  Throws on failure.
 */
extern char *orchestrator_secret_seal(const char *plaintext, int len, bool create_key);

/*
 * Open a sealed secret: the plaintext (palloc'd, NUL-terminated, *len
 * bytes), or NULL with *err filled in.  Does not throw (except when out of
 * memory).  The caller wipes the plaintext (explicit_bzero) when done.
 */
extern char *orchestrator_secret_open(const char *sealed, int sealedlen, int *len,
									  SecretError *err);

/* ereport(elevel) a SecretError. */
extern void orchestrator_secret_report(int elevel, const SecretError *err);

/*
 * The key of a webhook secret "whsec_<base64>": its length (16 to
 * WEBHOOK_KEY_MAX_LEN bytes, written to key), or -1 when the secret does
 * not have that form.  ASCII whitespace in the base64 is ignored.
 */
extern int	orchestrator_webhook_secret_key(const char *secret, int len, uint8 *key);

#endif							/* ORCHESTRATOR_SECRETS_H */
