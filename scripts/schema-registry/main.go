// The schema registry the tests run: Conduit's Schema Registry (github.com/conduitio/conduit-schema-registry,
// from the Go module proxy), which serves the Confluent Schema Registry REST API, with in-memory
// storage. Apicurio Registry cannot be assembled from Maven Central here (docs/schema-registry.md
// says why); this is the next real server that installs from the reachable registries.
//
// What this file adds around the library: a listen address, and optional HTTP basic auth so the
// tests can check that rtlake sends credentials (a registry's usual protection).
package main

import (
	"crypto/subtle"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/conduitio/conduit-commons/database/inmemory"
	schemaregistry "github.com/conduitio/conduit-schema-registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "address to listen on (port 0: any free port)")
	flag.Parse()

	registry, err := schemaregistry.NewSchemaRegistry(&inmemory.DB{})
	if err != nil {
		log.Fatalf("schema registry: %v", err)
	}
	mux := http.NewServeMux()
	schemaregistry.NewServer(slog.Default(), registry).RegisterHandlers(mux)

	var handler http.Handler = mux
	// SCHEMA_REGISTRY_BASIC_AUTH=user:password: every request must carry these credentials.
	if creds := os.Getenv("SCHEMA_REGISTRY_BASIC_AUTH"); creds != "" {
		handler = basicAuth(creds, mux)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("schema registry: %v", err)
	}
	// The first line of stdout is the URL: a test that asked for port 0 reads it.
	fmt.Printf("http://%s\n", listener.Addr())
	log.Fatal(http.Serve(listener, handler))
}

func basicAuth(creds string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user+":"+pass), []byte(creds)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="schema-registry"`)
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error_code":401,"message":"Unauthorized"}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
