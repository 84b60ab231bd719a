/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Secrets sealed at rest: AES-256-GCM with a key kept in a file outside
 *	  the database, the SQL entry point that seals webhook secrets, and the
 *	  random bytes new webhook secrets are made of.
 *
 * A sealed secret is the text
 *
 *		v1:<key id>:<base64(nonce || ciphertext || tag)>
 *
 * with a random 96-bit nonce per secret and a 128-bit tag; "v1:<key id>:"
 * is authenticated too (GCM additional data).  The key id (8 hex digits of
 * a SHA-256 of the key) tells "sealed with another key" (a restore into a
 * cluster without the same key file) from "altered".
 *
 * The key is 32 random bytes in the file orchestrator.secret_key_file
 * (relative to the data directory unless absolute).  It is created, mode
 * 0600, when the first secret is sealed: written to a temporary name, then
 * link()ed to its name, which never replaces a key another backend made
 * first.  Opening a secret reads the file once per process and again only
 * when a secret names another key (the file was copied in since); sealing
 * reads it every time, so that a new secret is always sealed with the key
 * that is in the file now.
 *
 * Plaintext never leaves C through SQL: the SQL functions seal, or sign
 * with a sealed secret (http_util.c), and nothing returns a plaintext.
 * Key and plaintext buffers are wiped after use.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/base64.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#include "guc.h"
#include "secrets.h"

#define SECRET_KEY_LEN		32
#define SECRET_NONCE_LEN	12
#define SECRET_TAG_LEN		16
#define SECRET_KEY_ID_LEN	8	/* hex digits */
/* "v1:" <key id> ":" */
#define SECRET_HEADER_LEN	(3 + SECRET_KEY_ID_LEN + 1)

/* Shortest webhook signing key, in bytes. */
#define WEBHOOK_KEY_MIN_LEN 16

PG_FUNCTION_INFO_V1(orchestrator_webhook_secret_seal);
PG_FUNCTION_INFO_V1(orchestrator_random_bytes);

typedef enum KeyStatus
{
	KEY_OK,
	KEY_MISSING,				/* the file does not exist */
	KEY_BAD						/* unreadable, wrong length, too open */
} KeyStatus;

/* The key of this process, once read. */
static uint8 cached_key[SECRET_KEY_LEN];
static char cached_key_id[SECRET_KEY_ID_LEN + 1];
static bool key_cached = false;

/*
 * key_file_display
 *		The key file's path as an operator should read it: absolute.
 */
static char *
key_file_display(void)
{
	const char *path = orchestrator_secret_key_file;

	if (is_absolute_path(path) || DataDir == NULL)
		return pstrdup(path);
	return psprintf("%s/%s", DataDir, path);
}

/*
 * copy_key_hint
 *		The hint for a secret that this cluster's key file cannot open.
 */
static char *
copy_key_hint(void)
{
	return psprintf("Copy the key file of the cluster where the secrets were sealed (the one a dump or backup comes from) to \"%s\", mode 0600; "
					"if that key is lost, set new secrets with orchestrator.rotate_webhook_secret().",
					key_file_display());
}

/*
 * compute_key_id
 *		8 hex digits of SHA-256("orchestrator key id" || key): names the key
 *		in sealed secrets without revealing anything useful about it.
 */
static bool
compute_key_id(const uint8 *key, char *id)
{
	static const char label[] = "orchestrator key id";
	uint8		md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool		ok;

	ok = ctx != NULL &&
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
		EVP_DigestUpdate(ctx, label, sizeof(label) - 1) == 1 &&
		EVP_DigestUpdate(ctx, key, SECRET_KEY_LEN) == 1 &&
		EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
		mdlen >= SECRET_KEY_ID_LEN / 2;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return false;
	for (int i = 0; i < SECRET_KEY_ID_LEN / 2; i++)
		snprintf(id + 2 * i, 3, "%02x", md[i]);
	return true;
}

/*
 * load_key
 *		Read the key file into this process's cache.  Never throws (except
 *		when out of memory): the dispatcher fails one delivery, not its
 *		claim.  On failure *err says why and the cache is left as it was.
 */
static KeyStatus
load_key(SecretError *err)
{
	const char *path = orchestrator_secret_key_file;
	uint8		key[SECRET_KEY_LEN];
	char		id[SECRET_KEY_ID_LEN + 1];
	struct stat st;
	int			fd;
	ssize_t		n;
	int			save_errno;

	err->sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		save_errno = errno;
		if (save_errno == ENOENT)
		{
			err->message = psprintf("secret key file \"%s\" does not exist", key_file_display());
			err->detail = pstrdup("Webhook secrets are sealed with the key in this file, which is neither in the database nor in its dumps.");
			err->hint = copy_key_hint();
			return KEY_MISSING;
		}
		err->message = psprintf("could not open secret key file \"%s\": %s",
								key_file_display(), strerror(save_errno));
		err->hint = pstrdup("The key file must be readable by the server's operating system user.");
		return KEY_BAD;
	}
	if (fstat(fd, &st) < 0)
	{
		save_errno = errno;
		CloseTransientFile(fd);
		err->message = psprintf("could not stat secret key file \"%s\": %s",
								key_file_display(), strerror(save_errno));
		return KEY_BAD;
	}
	if (!S_ISREG(st.st_mode))
	{
		CloseTransientFile(fd);
		err->message = psprintf("secret key file \"%s\" is not a regular file", key_file_display());
		return KEY_BAD;
	}
	if ((st.st_mode & S_IRWXO) != 0)
	{
		CloseTransientFile(fd);
		err->message = psprintf("secret key file \"%s\" is accessible by other users", key_file_display());
		err->detail = psprintf("Its mode is %04o.", (unsigned int) (st.st_mode & 07777));
		err->hint = psprintf("Make it readable by the server's operating system user only: chmod 0600 \"%s\".",
							 key_file_display());
		return KEY_BAD;
	}
	if (st.st_size != SECRET_KEY_LEN)
	{
		CloseTransientFile(fd);
		err->message = psprintf("secret key file \"%s\" has the wrong length", key_file_display());
		err->detail = psprintf("It has %lld bytes; a key is %d random bytes.",
							   (long long) st.st_size, SECRET_KEY_LEN);
		err->hint = copy_key_hint();
		return KEY_BAD;
	}
	n = read(fd, key, SECRET_KEY_LEN);
	save_errno = errno;
	CloseTransientFile(fd);
	if (n != SECRET_KEY_LEN)
	{
		explicit_bzero(key, sizeof(key));
		err->message = n < 0 ?
			psprintf("could not read secret key file \"%s\": %s", key_file_display(), strerror(save_errno)) :
			psprintf("could not read secret key file \"%s\": read %d of %d bytes",
					 key_file_display(), (int) n, SECRET_KEY_LEN);
		return KEY_BAD;
	}
	if (!compute_key_id(key, id))
	{
		explicit_bzero(key, sizeof(key));
		err->sqlerrcode = ERRCODE_INTERNAL_ERROR;
		err->message = pstrdup("could not compute the id of the secret key");
		return KEY_BAD;
	}
	memcpy(cached_key, key, SECRET_KEY_LEN);
	memcpy(cached_key_id, id, sizeof(cached_key_id));
	key_cached = true;
	explicit_bzero(key, sizeof(key));
	return KEY_OK;
}

/*
 * create_key_file
 *		Make a new key file.  Written under a name of this process's own,
 *		made durable, then link()ed to its name: link() fails when the name
 *		exists, so of two backends creating the file at once one key wins
 *		and both use it.  Throws on failure.
 */
static void
create_key_file(void)
{
	const char *path = orchestrator_secret_key_file;
	char		tmp[MAXPGPATH];
	char		dir[MAXPGPATH];
	uint8		key[SECRET_KEY_LEN];
	int			fd;
	int			save_errno;

	if (strlen(path) + 32 >= MAXPGPATH)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("secret key file path is too long"),
				 errhint("Set orchestrator.secret_key_file to a shorter path.")));
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, MyProcPid);
	(void) unlink(tmp);			/* left by an earlier process of this pid */

	if (!pg_strong_random(key, sizeof(key)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a secret key")));
	fd = OpenTransientFilePerm(tmp, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		save_errno = errno;
		explicit_bzero(key, sizeof(key));
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create secret key file \"%s\": %m", tmp)));
	}
	errno = 0;
	if (write(fd, key, sizeof(key)) != sizeof(key) || pg_fsync(fd) != 0)
	{
		save_errno = errno ? errno : ENOSPC;
		explicit_bzero(key, sizeof(key));
		CloseTransientFile(fd);
		(void) unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write secret key file \"%s\": %m", tmp)));
	}
	explicit_bzero(key, sizeof(key));
	if (CloseTransientFile(fd) != 0)
	{
		save_errno = errno;
		(void) unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close secret key file \"%s\": %m", tmp)));
	}

	if (link(tmp, path) == 0)
		ereport(LOG,
				(errmsg("orchestrator: created secret key file \"%s\"", key_file_display()),
				 errdetail("Webhook secrets are sealed with this key; they cannot be opened without it."),
				 errhint("Back this file up with the cluster, and copy it wherever the cluster is restored.")));
	else if (errno != EEXIST)
	{
		save_errno = errno;
		(void) unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not link \"%s\" to \"%s\": %m", tmp, path)));
	}
	(void) unlink(tmp);

	/* the new name must survive a crash before any secret sealed with it */
	strlcpy(dir, path, sizeof(dir));
	get_parent_directory(dir);
	(void) fsync_fname_ext(dir[0] ? dir : ".", true, false, ERROR);
}

/*
 * orchestrator_secret_report
 *		ereport a SecretError at elevel.
 */
void
orchestrator_secret_report(int elevel, const SecretError *err)
{
	ereport(elevel,
			(errcode(err->sqlerrcode),
			 errmsg_internal("%s", err->message),
			 err->detail ? errdetail_internal("%s", err->detail) : 0,
			 err->hint ? errhint("%s", err->hint) : 0));
}

/*
 * orchestrator_secret_seal
 *		Seal plaintext with the key in the key file (created first when
 *		missing and create_key is set).
 */
char *
orchestrator_secret_seal(const char *plaintext, int len, bool create_key)
{
	SecretError err = {0};
	KeyStatus	status;
	char		header[SECRET_HEADER_LEN + 1];
	uint8	   *raw;
	int			rawlen = SECRET_NONCE_LEN + len + SECRET_TAG_LEN;
	int			enclen;
	char	   *result;
	EVP_CIPHER_CTX *ctx;
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	/* always the key that is in the file now (it may have been copied in) */
	status = load_key(&err);
	if (status == KEY_MISSING && create_key)
	{
		create_key_file();
		status = load_key(&err);
	}
	if (status != KEY_OK)
		orchestrator_secret_report(ERROR, &err);

	snprintf(header, sizeof(header), "v1:%s:", cached_key_id);
	raw = palloc(rawlen);
	enclen = pg_b64_enc_len(rawlen);
	result = palloc(SECRET_HEADER_LEN + enclen + 1);
	if (!pg_strong_random(raw, SECRET_NONCE_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a nonce")));

	/* nothing in here throws: the context is always freed */
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, cached_key, raw) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, (const uint8 *) header, SECRET_HEADER_LEN) == 1 &&
		EVP_EncryptUpdate(ctx, raw + SECRET_NONCE_LEN, &outl, (const uint8 *) plaintext, len) == 1 &&
		EVP_EncryptFinal_ex(ctx, raw + SECRET_NONCE_LEN + outl, &finl) == 1 &&
		outl + finl == len &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN,
							raw + SECRET_NONCE_LEN + len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not seal a secret with AES-256-GCM")));

	memcpy(result, header, SECRET_HEADER_LEN);
	enclen = pg_b64_encode((const char *) raw, rawlen, result + SECRET_HEADER_LEN, enclen);
	if (enclen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encode a sealed secret")));
	result[SECRET_HEADER_LEN + enclen] = '\0';
	pfree(raw);
	return result;
}

/*
 * malformed
 *		Fill *err for a value that is not a sealed secret; returns NULL.
 */
static char *
malformed(SecretError *err)
{
	err->sqlerrcode = ERRCODE_DATA_CORRUPTED;
	err->message = pstrdup("sealed secret is malformed");
	err->detail = pstrdup("A sealed secret is \"v1:<key id>:<base64>\".");
	err->hint = pstrdup("Set a new secret with orchestrator.rotate_webhook_secret().");
	return NULL;
}

/*
 * orchestrator_secret_open
 *		Decrypt a sealed secret; see secrets.h.
 */
char *
orchestrator_secret_open(const char *sealed, int sealedlen, int *len, SecretError *err)
{
	char		id[SECRET_KEY_ID_LEN + 1];
	const char *b64;
	int			b64len;
	uint8	   *raw;
	int			rawlen;
	int			ctlen;
	char	   *plain;
	EVP_CIPHER_CTX *ctx;
	int			outl = 0;
	int			finl = 0;
	bool		ok;

	memset(err, 0, sizeof(*err));
	*len = 0;
	if (sealedlen < SECRET_HEADER_LEN || strncmp(sealed, "v1:", 3) != 0 ||
		sealed[SECRET_HEADER_LEN - 1] != ':')
		return malformed(err);
	for (int i = 0; i < SECRET_KEY_ID_LEN; i++)
	{
		char		c = sealed[3 + i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return malformed(err);
		id[i] = c;
	}
	id[SECRET_KEY_ID_LEN] = '\0';

	b64 = sealed + SECRET_HEADER_LEN;
	b64len = sealedlen - SECRET_HEADER_LEN;
	raw = palloc(pg_b64_dec_len(b64len) + 1);
	rawlen = pg_b64_decode(b64, b64len, (char *) raw, pg_b64_dec_len(b64len) + 1);
	if (rawlen < SECRET_NONCE_LEN + SECRET_TAG_LEN)
	{
		pfree(raw);
		return malformed(err);
	}

	/* the cached key, or the file again when it may hold another key now */
	if (!key_cached || strcmp(cached_key_id, id) != 0)
	{
		if (load_key(err) != KEY_OK)
		{
			pfree(raw);
			return NULL;
		}
	}
	if (strcmp(cached_key_id, id) != 0)
	{
		pfree(raw);
		err->sqlerrcode = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		err->message = pstrdup("secret was sealed with another key");
		err->detail = psprintf("It was sealed with key %s; the key file \"%s\" holds key %s.",
							   id, key_file_display(), cached_key_id);
		err->hint = copy_key_hint();
		return NULL;
	}

	ctlen = rawlen - SECRET_NONCE_LEN - SECRET_TAG_LEN;
	plain = palloc(ctlen + 1);

	/* nothing in here throws: the context is always freed */
	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, cached_key, raw) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, (const uint8 *) sealed, SECRET_HEADER_LEN) == 1 &&
		EVP_DecryptUpdate(ctx, (uint8 *) plain, &outl, raw + SECRET_NONCE_LEN, ctlen) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRET_TAG_LEN,
							raw + SECRET_NONCE_LEN + ctlen) == 1 &&
		EVP_DecryptFinal_ex(ctx, (uint8 *) plain + outl, &finl) == 1 &&
		outl + finl == ctlen;
	EVP_CIPHER_CTX_free(ctx);
	pfree(raw);
	if (!ok)
	{
		explicit_bzero(plain, ctlen + 1);
		pfree(plain);
		err->sqlerrcode = ERRCODE_DATA_CORRUPTED;
		err->message = pstrdup("could not decrypt a sealed secret");
		err->detail = psprintf("Its authentication tag does not match the key %s of \"%s\": the stored value was altered.",
							   cached_key_id, key_file_display());
		err->hint = pstrdup("Set a new secret with orchestrator.rotate_webhook_secret().");
		return NULL;
	}
	plain[ctlen] = '\0';
	*len = ctlen;
	return plain;
}

/*
 * orchestrator_webhook_secret_key
 *		Decode "whsec_<base64>" into its key; see secrets.h.
 */
int
orchestrator_webhook_secret_key(const char *secret, int len, uint8 *key)
{
	char		b64[256];
	uint8		buf[192];
	int			n = 0;
	int			keylen;

	if (len < 6 || strncmp(secret, "whsec_", 6) != 0)
		return -1;
	/* decode() in SQL, which checked secrets before 0.3, skips whitespace */
	for (int i = 6; i < len; i++)
	{
		char		c = secret[i];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (n >= (int) sizeof(b64))
		{
			explicit_bzero(b64, sizeof(b64));
			return -1;
		}
		b64[n++] = c;
	}
	keylen = n > 0 && pg_b64_dec_len(n) <= (int) sizeof(buf) ?
		pg_b64_decode(b64, n, (char *) buf, sizeof(buf)) : -1;
	explicit_bzero(b64, sizeof(b64));
	if (keylen < WEBHOOK_KEY_MIN_LEN || keylen > WEBHOOK_KEY_MAX_LEN)
	{
		explicit_bzero(buf, sizeof(buf));
		return -1;
	}
	memcpy(key, buf, keylen);
	explicit_bzero(buf, sizeof(buf));
	return keylen;
}

/*
 * orchestrator_webhook_secret_seal
 *		_webhook_secret_seal(secret text, create_key boolean): check that
 *		secret is "whsec_" + base64 of 16 to 64 bytes and seal it.  The
 *		secret is never echoed, and the statement is kept out of the log.
 */
Datum
orchestrator_webhook_secret_seal(PG_FUNCTION_ARGS)
{
	text	   *secret = PG_GETARG_TEXT_PP(0);
	bool		create_key = PG_GETARG_BOOL(1);
	uint8		key[WEBHOOK_KEY_MAX_LEN];
	int			keylen;
	char	   *sealed;

	keylen = orchestrator_webhook_secret_key(VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret), key);
	explicit_bzero(key, sizeof(key));
	if (keylen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook secret"),
				 errdetail("A secret is \"whsec_\" followed by the base64 encoding of 16 to 64 random bytes."),
				 errhint("Pass NULL to have one generated and returned."),
				 errhidestmt(true)));
	sealed = orchestrator_secret_seal(VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret), create_key);
	PG_RETURN_TEXT_P(cstring_to_text(sealed));
}

/*
 * orchestrator_random_bytes
 *		_random_bytes(n): n bytes straight from the strong random source,
 *		for new webhook secrets (pgcrypto is not required).  Not from the
 *		identifiers' pool (random_pool.c): a secret's bytes are drawn for it
 *		alone and not kept in the process.
 */
Datum
orchestrator_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	bytea	   *result;

	if (n < 1 || n > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of random bytes must be from 1 to 1024"),
				 errdetail("Got %d.", n)));
	result = palloc(VARHDRSZ + n);
	SET_VARSIZE(result, VARHDRSZ + n);
	if (!pg_strong_random(VARDATA(result), n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}
