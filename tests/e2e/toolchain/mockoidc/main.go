// Command mockoidc serves github.com/oauth2-proxy/mockoidc over TLS: the identity provider of the
// acceptance tier's sign-on test (tests/e2e/test_signon.py).
//
//	mockoidc -listen 127.0.0.1:0 -cert tls.crt -key tls.key -client-id kubernetes
//
// Its first stdout line is JSON: {"issuer", "clientID", "clientSecret", "control"}. Tokens come from the
// library's own authorization-code flow (/oidc/authorize, /oidc/token); three test controls are served on
// `control`, a plain-HTTP loopback address of their own:
//
//	POST /user    {"subject", "email", "groups"}: the user the next /oidc/authorize signs in
//	POST /clock   ?shift=-2h: move the provider's clock (tokens it issues then are expired now)
//	POST /client  ?id=grafana: the client (the tokens' audience) the flow serves from now on
//
// Every request, the library's and the controls', is served one at a time: the controls never race it.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/oauth2-proxy/mockoidc"
)

type user struct {
	Subject string   `json:"subject"`
	Email   string   `json:"email"`
	Groups  []string `json:"groups"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := flag.String("cert", "", "TLS serving certificate (PEM)")
	keyFile := flag.String("key", "", "TLS serving key (PEM)")
	clientID := flag.String("client-id", "", "the OIDC client (the ID tokens' audience)")
	flag.Parse()
	if *certFile == "" || *keyFile == "" || *clientID == "" {
		log.Fatal("-cert, -key and -client-id are required")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("TLS key pair: %v", err)
	}
	provider, err := mockoidc.NewServer(nil)
	if err != nil {
		log.Fatalf("provider: %v", err)
	}
	provider.ClientID = *clientID

	var serial sync.Mutex
	err = provider.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serial.Lock()
			defer serial.Unlock()
			next.ServeHTTP(w, r)
		})
	})
	if err != nil {
		log.Fatalf("middleware: %v", err)
	}
	controlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	go func() {
		log.Fatal(http.Serve(controlLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			serial.Lock()
			defer serial.Unlock()
			control(provider, w, r)
		})))
	}()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	// Start serves the listener as given and only names the scheme https when given a TLS config.
	serving := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if err := provider.Start(tls.NewListener(ln, serving), serving); err != nil {
		log.Fatalf("start: %v", err)
	}

	cfg := provider.Config()
	out, _ := json.Marshal(map[string]string{"issuer": cfg.Issuer, "clientID": cfg.ClientID,
		"clientSecret": cfg.ClientSecret, "control": "http://" + controlLn.Addr().String()})
	fmt.Println(string(out))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	_ = provider.Shutdown()
}

// control serves the test controls.
func control(provider *mockoidc.MockOIDC, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case "/user":
		var u user
		if err := json.NewDecoder(r.Body).Decode(&u); err != nil || u.Subject == "" {
			http.Error(w, "expected {\"subject\", \"email\", \"groups\"}", http.StatusBadRequest)
			return
		}
		provider.QueueUser(&mockoidc.MockUser{Subject: u.Subject, Email: u.Email, EmailVerified: true,
			PreferredUsername: u.Subject, Groups: u.Groups})
	case "/clock":
		shift, err := time.ParseDuration(r.URL.Query().Get("shift"))
		if err != nil {
			http.Error(w, "expected ?shift=<Go duration>", http.StatusBadRequest)
			return
		}
		provider.FastForward(shift)
	case "/client":
		id := r.URL.Query().Get("id")
		if id == "" {
			http.Error(w, "expected ?id=<client>", http.StatusBadRequest)
			return
		}
		provider.ClientID = id
	default:
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
