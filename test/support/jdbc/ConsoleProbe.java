// The admin console through JDBC (pgjdbc), as a Java operator tool would read it. Run with
// `java -cp /usr/share/java/postgresql.jar ConsoleProbe.java <jdbc-url>`; prints one line per fact for the test.
// The console speaks the simple query protocol only (as PgBouncer's), so the URL carries preferQueryMode=simple.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import org.postgresql.util.PSQLException;

public class ConsoleProbe {
  public static void main(String[] args) throws Exception {
    try (Connection c = DriverManager.getConnection(args[0]); Statement st = c.createStatement()) {
      try (ResultSet rs = st.executeQuery("SHOW CLIENTS")) {
        ResultSetMetaData md = rs.getMetaData();
        while (rs.next()) {
          if (!"jdbc-probe".equals(rs.getString("application_name"))) continue;
          for (int i = 1; i <= md.getColumnCount(); i++) {
            System.out.println("clients." + md.getColumnName(i) + "=" + rs.getString(i));
          }
          System.out.println("clients.id.int=" + rs.getInt("id"));
          System.out.println("clients.connect_time.millis=" + rs.getTimestamp("connect_time").getTime());
        }
      }
      try (ResultSet rs = st.executeQuery("SHOW SSL")) {
        while (rs.next()) {
          System.out.println("ssl.row=" + rs.getInt("pid") + "|" + rs.getBoolean("ssl") + "|" + rs.getString("version")
              + "|" + rs.getInt("bits") + "|" + rs.getBigDecimal("client_serial"));
        }
      }
      try {
        st.executeQuery("SELECT 1");
        System.out.println("error=none");
      } catch (PSQLException e) {
        System.out.println("error.sqlstate=" + e.getSQLState());
        System.out.println("error.message=" + e.getServerErrorMessage().getMessage());
        System.out.println("error.hint=" + e.getServerErrorMessage().getHint());
      }
      try (ResultSet rs = st.executeQuery("SHOW VERSION")) {
        rs.next();
        System.out.println("version=" + rs.getString(1));
      }
    } catch (SQLException e) {
      System.out.println("connect.error=" + e.getSQLState() + " " + e.getMessage() + (e.getCause() == null ? "" : " cause: " + e.getCause()));
      System.exit(1);
    }
  }
}
