# orchestrator: PGXS build
EXTENSION   = orchestrator
EXTVERSION  = 0.4
PREVVERSION = 0.3

MODULE_big  = orchestrator
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is built from the files in sql/src/, concatenated in name
# order (one file per concern).  Upgrade scripts sql/orchestrator--A--B.sql are
# written by hand, one per release; the install scripts of released versions
# are kept as they were, so that upgrades from them can be tested.
SQL_SOURCES = $(sort $(wildcard sql/src/*.sql))
DATA_built  = sql/$(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard sql/$(EXTENSION)--*.sql))

PG_CPPFLAGS = -I$(srcdir)/src $(shell curl-config --cflags) -DORCHESTRATOR_VERSION=\"$(EXTVERSION)\"
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Werror
# libcrypto: AES-256-GCM for the secrets sealed at rest (src/secrets.c);
# libyaml: workflow specs written in YAML (src/yaml_spec.c)
SHLIB_LINK  = $(shell curl-config --libs) -lcrypto -lyaml

# pg_regress: inputs in test/sql, expected output in expected/ (test/expected is
# a link to it), a throwaway instance with the preload setting.
REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --outputdir=test --temp-config=test/orchestrator.conf \
               --temp-instance=./tmp_check --dbname=contrib_regression
ISOLATION      = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation --temp-config=test/orchestrator.conf \
                 --temp-instance=./tmp_check_iso --dbname=contrib_regression

EXTRA_CLEAN = test/results test/regression.* test/isolation/results test/isolation/output_iso \
              tmp_check tmp_check_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies unless PostgreSQL was configured with
# --enable-depend: rebuild every object when a header changes (a struct that
# grows must not be compiled into some objects only).
$(OBJS): $(wildcard src/*.h)
# ORCHESTRATOR_VERSION comes from EXTVERSION: a new version rebuilds them all
$(OBJS): Makefile

# orchestrator-worker (src/worker/): a client program on libpq.  PGXS builds a
# module or programs per Makefile, not both, so it has a Makefile of its own,
# run from here; it is installed beside the PostgreSQL binaries (bindir).
WORKER_MAKE = $(MAKE) -C src/worker PG_CONFIG=$(PG_CONFIG) EXTVERSION=$(EXTVERSION)
.PHONY: worker install-worker uninstall-worker clean-worker
all: worker
worker:
	$(WORKER_MAKE) all
install: install-worker
install-worker: worker
	$(WORKER_MAKE) install
uninstall: uninstall-worker
uninstall-worker:
	$(WORKER_MAKE) uninstall
clean: clean-worker
clean-worker:
	$(WORKER_MAKE) clean

$(DATA_built): $(SQL_SOURCES)
	( printf '%s\n' '-- Generated from sql/src/*.sql by the Makefile: edit those, not this file.' \
	         '\echo Use "CREATE EXTENSION orchestrator" to load this file. \quit'; \
	  cat $^ ) > $@

# The generated parts of the newest upgrade script (views, functions,
# privileges) follow sql/src/*.sql; its hand-written part (tables, data) is
# kept.  Run after changing sql/src, and commit the result.
.PHONY: upgrade-script
upgrade-script: $(DATA_built)
	python3 sql/tools/upgrade.py $(PREVVERSION) $(EXTVERSION)

.PHONY: test
test:
	bash test/run.sh
