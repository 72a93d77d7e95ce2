//! The schema of a database, read from the system catalogs through an ordinary connection (no
//! `pg_dump`, no `psql`) and rendered as deterministic, human-readable SQL.
//!
//! Covered: schemas, extensions, types (enum, domain, composite, range), sequences, tables with
//! their columns (type, collation, identity, generation, nullability, default, order),
//! constraints, indexes, views and materialized views, functions, procedures and aggregates,
//! and triggers. Left out on purpose: data, owners, grants, comments, statistics, extension
//! versions (they differ between server releases), the objects extensions create (the
//! extension line covers them), PostgreSQL 18's catalogued `NOT NULL` constraints (the column
//! line covers them), and the migrations bookkeeping table.
//!
//! Names are printed fully qualified: the read runs with an empty `search_path`, so the output
//! does not depend on the connection's settings. Every section is sorted byte-wise
//! (`COLLATE "C"`), so it does not depend on the server's locale either.

use sqlx::PgPool;
use sqlx::postgres::types::Oid;

use crate::error::{Error, Result};

/// `<alias>.nspname` is a schema users create objects in.
macro_rules! user_schema {
    ($n:literal) => {
        concat!(
            $n,
            ".nspname <> 'information_schema' AND ",
            $n,
            ".nspname NOT LIKE 'pg\\_%'"
        )
    };
}

/// The object `$oid` of catalog `$catalog` was not created by an extension.
macro_rules! own {
    ($catalog:literal, $oid:literal) => {
        concat!(
            "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = '",
            $catalog,
            "'::regclass AND d.objid = ",
            $oid,
            " AND d.deptype = 'e')"
        )
    };
}

/// One kind of object: its heading in the rendering, and the query listing its objects as
/// SQL, in order. `$1`, when `uses_table`, is the bookkeeping tables' oids.
struct Section {
    heading: &'static str,
    query: &'static str,
    uses_table: bool,
}

const SECTIONS: &[Section] = &[
    Section {
        heading: "schemas",
        query: concat!(
            "SELECT format('CREATE SCHEMA %I;', n.nspname) FROM pg_namespace n \
             WHERE n.nspname <> 'public' AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_namespace", "n.oid"),
            " ORDER BY n.nspname COLLATE \"C\""
        ),
        uses_table: false,
    },
    Section {
        heading: "extensions",
        query: "SELECT format('CREATE EXTENSION %I WITH SCHEMA %I;', e.extname, n.nspname) \
                FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
                WHERE e.extname <> 'plpgsql' ORDER BY e.extname COLLATE \"C\"",
        uses_table: false,
    },
    Section {
        heading: "types",
        query: concat!(
            "SELECT CASE t.typtype \
               WHEN 'e' THEN format('CREATE TYPE %s AS ENUM (%s);', t.oid::regtype, \
                 (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) \
                  FROM pg_enum e WHERE e.enumtypid = t.oid)) \
               WHEN 'd' THEN format('CREATE DOMAIN %s AS %s%s%s%s;', t.oid::regtype, \
                 format_type(t.typbasetype, t.typtypmod), \
                 CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END, \
                 COALESCE(' DEFAULT ' || t.typdefault, ''), \
                 COALESCE((SELECT string_agg(format(' CONSTRAINT %I %s', k.conname, \
                   pg_get_constraintdef(k.oid)), '' ORDER BY k.conname COLLATE \"C\") \
                   FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c'), '')) \
               WHEN 'c' THEN format('CREATE TYPE %s AS (%s);', t.oid::regtype, \
                 (SELECT string_agg(format('%I %s', a.attname, \
                   format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) \
                  FROM pg_attribute a \
                  WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)) \
               ELSE format('CREATE TYPE %s AS RANGE (SUBTYPE = %s);', t.oid::regtype, \
                 (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r \
                  WHERE r.rngtypid = t.oid)) \
             END \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
             LEFT JOIN pg_class c ON c.oid = t.typrelid \
             WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND c.relkind = 'c')) AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_type", "t.oid"),
            " ORDER BY t.oid::regtype::text COLLATE \"C\""
        ),
        uses_table: false,
    },
    Section {
        heading: "sequences",
        query: concat!(
            "SELECT format('CREATE SEQUENCE %s AS %s INCREMENT %s MINVALUE %s MAXVALUE %s \
               START %s CACHE %s%s%s;', c.oid::regclass, format_type(s.seqtypid, NULL), \
               s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, \
               CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END, \
               COALESCE((SELECT format(' OWNED BY %s.%I', d.refobjid::regclass, a.attname) \
                 FROM pg_depend d JOIN pg_attribute a \
                   ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')) \
             FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY c.oid::regclass::text COLLATE \"C\""
        ),
        uses_table: false,
    },
    Section {
        heading: "tables",
        query: concat!(
            "SELECT format(E'CREATE %sTABLE %s (%s\\n)%s%s;', \
               CASE WHEN c.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, c.oid::regclass, \
               COALESCE((SELECT string_agg(E'\\n    ' \
                   || format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)) \
                   || CASE WHEN a.attcollation <> t.typcollation \
                        THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END \
                   || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' \
                        WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END \
                   || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END \
                   || CASE WHEN ad.adbin IS NULL THEN '' \
                        WHEN a.attgenerated = '' \
                          THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid) \
                        ELSE ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) \
                          || CASE a.attgenerated WHEN 's' THEN ') STORED' ELSE ') VIRTUAL' END \
                      END, \
                   ',' ORDER BY a.attnum) \
                 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                 LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), ''), \
               CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(c.oid) \
                 ELSE '' END, \
               COALESCE((SELECT format(' PARTITION OF %s %s', i.inhparent::regclass, \
                   pg_get_expr(c.relpartbound, c.oid)) \
                 FROM pg_inherits i WHERE i.inhrelid = c.oid AND c.relispartition), '')) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.oid <> ALL ($1) AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY c.oid::regclass::text COLLATE \"C\""
        ),
        uses_table: true,
    },
    Section {
        heading: "constraints",
        query: concat!(
            "SELECT format('ALTER TABLE %s ADD CONSTRAINT %I %s;', c.oid::regclass, k.conname, \
               pg_get_constraintdef(k.oid)) \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype IN ('c', 'f', 'p', 'u', 'x') AND c.oid <> ALL ($1) AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY c.oid::regclass::text COLLATE \"C\", k.conname COLLATE \"C\""
        ),
        uses_table: true,
    },
    Section {
        // Indexes that implement a primary key, unique or exclusion constraint are listed as
        // that constraint.
        heading: "indexes",
        query: concat!(
            "SELECT pg_get_indexdef(i.oid) || ';' \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE c.oid <> ALL ($1) AND NOT EXISTS (SELECT FROM pg_constraint k \
               WHERE k.conindid = i.oid AND k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x')) \
             AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY i.oid::regclass::text COLLATE \"C\""
        ),
        uses_table: true,
    },
    Section {
        heading: "views",
        query: concat!(
            "SELECT format(E'CREATE %sVIEW %s AS\\n%s', \
               CASE WHEN c.relkind = 'm' THEN 'MATERIALIZED ' ELSE '' END, c.oid::regclass, \
               pg_get_viewdef(c.oid, true)) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY c.oid::regclass::text COLLATE \"C\""
        ),
        uses_table: false,
    },
    Section {
        // pg_get_functiondef does not do aggregates: they get a line of their own.
        heading: "functions",
        query: concat!(
            "SELECT CASE WHEN p.prokind = 'a' THEN \
               (SELECT format('CREATE AGGREGATE %s.%I(%s) (SFUNC = %s, STYPE = %s);', \
                  quote_ident(n.nspname), p.proname, pg_get_function_identity_arguments(p.oid), \
                  g.aggtransfn::regproc, format_type(g.aggtranstype, NULL)) \
                FROM pg_aggregate g WHERE g.aggfnoid = p.oid) \
             ELSE rtrim(pg_get_functiondef(p.oid), E'\\n') || ';' END \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ",
            user_schema!("n"),
            " AND ",
            own!("pg_proc", "p.oid"),
            " ORDER BY p.oid::regprocedure::text COLLATE \"C\""
        ),
        uses_table: false,
    },
    Section {
        heading: "triggers",
        query: concat!(
            "SELECT pg_get_triggerdef(t.oid) || ';' \
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT t.tgisinternal AND c.oid <> ALL ($1) AND ",
            user_schema!("n"),
            " AND ",
            own!("pg_class", "c.oid"),
            " ORDER BY c.oid::regclass::text COLLATE \"C\", t.tgname COLLATE \"C\""
        ),
        uses_table: true,
    },
];

/// The first lines of a snapshot file.
const SNAPSHOT_HEADER: &str = "\
-- The database schema at the newest migration, read from the PostgreSQL catalogs by pgfresh.
-- Generated: `pgfresh check --update` rewrites this file, and `pgfresh check` fails when the
-- migrations stop producing it. Review its diff like code; do not edit it by hand.
";

/// A database's schema: the SQL of each object, grouped by kind, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schema {
    sections: Vec<(&'static str, Vec<String>)>,
}

impl Schema {
    /// Reads the schema of the database `pool` is connected to, leaving out the `bookkeeping`
    /// tables (the migrations table, as the migrator names it, or the migration tools').
    pub async fn read(pool: &PgPool, bookkeeping: &[&str]) -> Result<Self> {
        let failed = |e| Error::database("reading the schema from the catalogs", e);
        let mut tx = pool.begin().await.map_err(failed)?;
        // Resolved before the search path is emptied: the migrator names it unqualified.
        let tables: Vec<Oid> = sqlx::query_scalar(
            "SELECT coalesce(array_agg(to_regclass(t)::oid) \
             FILTER (WHERE to_regclass(t) IS NOT NULL), '{}') FROM unnest($1::text[]) t",
        )
        .bind(bookkeeping)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        sqlx::query("SELECT set_config('search_path', '', true)")
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        let mut sections = Vec::with_capacity(SECTIONS.len());
        for section in SECTIONS {
            let query = sqlx::query_scalar::<_, String>(section.query);
            let query = if section.uses_table {
                query.bind(&tables)
            } else {
                query
            };
            let objects = query.fetch_all(&mut *tx).await.map_err(failed)?;
            sections.push((section.heading, objects));
        }
        tx.rollback().await.map_err(failed)?;
        Ok(Self { sections })
    }

    /// The objects as SQL for comparing two schemas: every kind's heading, even without
    /// objects, so that a diff shows the objects that differ and not the headings around them.
    pub fn body(&self) -> String {
        self.render(true)
    }

    /// The text of a snapshot file: a header saying what the file is, then the objects, with
    /// the headings of kinds that have none left out.
    pub fn snapshot(&self) -> String {
        format!("{SNAPSHOT_HEADER}{}", self.render(false))
    }

    /// The objects as SQL, one blank line between objects, a comment heading each kind.
    fn render(&self, empty_sections: bool) -> String {
        let mut out = String::new();
        for (heading, objects) in &self.sections {
            if objects.is_empty() && !empty_sections {
                continue;
            }
            out.push_str("\n-- ");
            out.push_str(heading);
            out.push('\n');
            for object in objects {
                out.push('\n');
                out.push_str(object);
                out.push('\n');
            }
        }
        if out.is_empty() {
            out.push_str("\n-- (no objects)\n");
        }
        out
    }
}
