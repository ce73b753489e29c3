"""Everything that talks to the database (asyncpg): pool, reads, writes, provisioning."""
