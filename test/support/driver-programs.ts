/**
 * Driver programs for the pooling tests (run by Debian's python3-psycopg and Java 17 with libpostgresql-jdbc-java).
 * Each runs one statement as a server-side prepared statement while two other connections hold servers in
 * transactions, so that in transaction mode it must be prepared on both servers of a pool of two. Each prints the
 * labels it read, the number of distinct backends that ran the statement, and how many statements the pool
 * prepared under its PGTLS_ names on the last server.
 *
 *   python3 - <dsn>                 (psycopg: prepare_threshold=0)
 *   java Prog.java <jdbc url> <password>   (JDBC: use prepareThreshold=1 in the URL)
 */
import assert from 'node:assert/strict';

// The driver's statement runs while h1 holds one server in a transaction, then while h2 holds the other: in
// transaction mode it must be prepared on both servers.
export const PSYCOPG_PROGRAM = `
import sys, psycopg
dsn = sys.argv[1]
b = psycopg.connect(dsn, prepare_threshold=0, autocommit=True)
out, pids = [], set()
def run(i):
    row = b.execute("select label, pg_backend_pid() from items where id = %s", (i,)).fetchone()
    out.append(row[0]); pids.add(row[1])
h1 = psycopg.connect(dsn)
h1.execute("select 1")  # psycopg opened a transaction: h1 keeps its server
for i in (1, 2, 3):
    run(i)
h2 = psycopg.connect(dsn)
h2.execute("select 1")  # h2 takes the server b used; h1 then frees the other one
h1.commit(); h1.close()
for i in (4, 5, 6):
    run(i)
h2.commit(); h2.close()
names = b.execute("select count(*) from pg_prepared_statements where name like 'PGTLS_%'").fetchone()[0]
print(",".join(out))
print(len(pids))
print(names)
b.close()
`;

export const JDBC_PROGRAM = `
import java.sql.*;
import java.util.*;
public class Prog {
  public static void main(String[] a) throws Exception {
    Connection c = DriverManager.getConnection(a[0], "app", a[1]);
    PreparedStatement ps = c.prepareStatement("select label, pg_backend_pid() from items where id = ?");
    List<String> out = new ArrayList<>();
    Set<Integer> pids = new HashSet<>();
    Connection h2 = null;
    Connection h1 = DriverManager.getConnection(a[0], "app", a[1]);
    h1.setAutoCommit(false);
    h1.createStatement().executeQuery("select 1").close();
    for (int i = 1; i <= 6; i++) {
      if (i == 4) {
        // h2 takes the server the statement ran on; h1 then frees the other one.
        h2 = DriverManager.getConnection(a[0], "app", a[1]);
        h2.setAutoCommit(false);
        h2.createStatement().executeQuery("select 1").close();
        h1.commit();
        h1.close();
      }
      ps.setInt(1, i);
      ResultSet rs = ps.executeQuery();
      rs.next();
      out.add(rs.getString(1));
      pids.add(rs.getInt(2));
    }
    h2.commit();
    h2.close();
    System.out.println(String.join(",", out));
    System.out.println(pids.size());
    ResultSet rs = c.createStatement().executeQuery("select count(*) from pg_prepared_statements where name like 'PGTLS_%'");
    rs.next();
    System.out.println(rs.getInt(1));
    c.close();
  }
}
`;

/**
 * Check what a driver program printed: the six labels; the statement ran on two servers in transaction mode (prepared
 * there under the pool's PGTLS_ names) and on the client's one server in session mode (the driver's own names
 * relayed unchanged, none of the pool's).
 */
export function assertDriverOutput(stdout: string, mode: 'session' | 'transaction'): void {
  const [labels, pids, names] = stdout.trim().split('\n');
  assert.equal(labels, 'item 1,item 2,item 3,item 4,item 5,item 6');
  assert.equal(pids, mode === 'transaction' ? '2' : '1');
  if (mode === 'transaction') assert.ok(Number(names) >= 1, stdout);
  else assert.equal(names, '0');
}
