-- orchestrator 0.2 -> 0.3: ownership and rights.
\echo Use "ALTER EXTENSION orchestrator UPDATE TO '0.3'" to load this file. \quit
