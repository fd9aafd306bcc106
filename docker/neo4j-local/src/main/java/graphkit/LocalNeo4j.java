package graphkit;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.QueryExecutionException;

/**
 * A Neo4j 5 Community DBMS, embedded, with the Bolt connector bound to 127.0.0.1.
 *
 * <p>Usage: {@code LocalNeo4j --dir DIR --port PORT}. The password of user {@code neo4j} is
 * taken from the environment variable NEO4J_PASSWORD (at least 8 characters). Prints
 * {@code ready bolt://127.0.0.1:PORT} once Bolt accepts connections and runs until it is
 * terminated (SIGTERM shuts the DBMS down cleanly).
 */
public final class LocalNeo4j {
    private LocalNeo4j() {}

    public static void main(String[] args) throws Exception {
        Path dir = Path.of("neo4j-data");
        int port = 7687;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--dir" -> dir = Path.of(args[i + 1]);
                case "--port" -> port = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        String password = System.getenv().getOrDefault("NEO4J_PASSWORD", "");
        if (password.length() < 8) {
            System.err.println("NEO4J_PASSWORD must have at least 8 characters (Neo4j refuses shorter ones)");
            System.exit(2);
        }
        Files.createDirectories(dir);
        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(dir.toAbsolutePath())
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                // LOAD CSV FROM 'file:///…' would read any file this user can: off
                .setConfig(GraphDatabaseSettings.allow_file_urls, false)
                .build();
        try {
            dbms.database("system").executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
        } catch (QueryExecutionException e) {
            // a restart with the password already set: Neo4j refuses to "change" it to itself
            if (!String.valueOf(e.getMessage()).contains("Old password and new password cannot be the same")) {
                throw e;
            }
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            dbms.shutdown();
            stopped.countDown();
        }));
        System.out.println("ready bolt://127.0.0.1:" + port);
        System.out.flush();
        stopped.await();
    }
}
