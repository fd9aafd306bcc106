"""The feature graph: schema, the two stores (embedded LadybugDB and Neo4j), and loading."""
