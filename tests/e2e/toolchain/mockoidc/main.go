// Command mockoidc serves github.com/oauth2-proxy/mockoidc over TLS: the identity provider of the
// acceptance tier's sign-on test (tests/e2e/test_signon.py).
//
//	mockoidc -listen 127.0.0.1:0 -cert tls.crt -key tls.key -client-id kubernetes
//
// Its first stdout line is JSON: {"issuer", "clientID", "clientSecret", "control"}. Tokens come from the
// library's own authorization-code flow (/oidc/authorize, /oidc/token); three test controls are served on
// `control`, a plain-HTTP loopback address of their own:
//
//	POST /user    {"subject", "email", "groups", "name"}: the user the next /oidc/authorize signs in (`name`,
//	              optional, is the profile scope's display name: some clients require one)
//	POST /clock   ?shift=-2h: move the provider's clock (tokens it issues then are expired now)
//	POST /client  ?id=grafana: the client (the tokens' audience) the flow serves from now on
//
// Every request, the library's and the controls', is served one at a time: the controls never race it. Clients
// may send their credentials in the form or, as OpenID Connect's default, in the Authorization header.
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

type user struct {
	Subject string   `json:"subject"`
	Email   string   `json:"email"`
	Groups  []string `json:"groups"`
	Name    string   `json:"name"`
}

// namedUser is the library's user with the `name` claim it lacks, in the ID token and the userinfo alike.
type namedUser struct {
	*mockoidc.MockUser
	name string
}

func (u *namedUser) Claims(scope []string, base *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	claims, err := u.MockUser.Claims(scope, base)
	if err != nil || !slices.Contains(scope, "profile") {
		return claims, err
	}
	return namedClaims{claims, u.name}, nil
}

func (u *namedUser) Userinfo(scope []string) ([]byte, error) {
	info, err := u.MockUser.Userinfo(scope)
	if err != nil || !slices.Contains(scope, "profile") {
		return info, err
	}
	return withName(info, u.name)
}

type namedClaims struct {
	jwt.Claims
	name string
}

func (c namedClaims) MarshalJSON() ([]byte, error) {
	claims, err := json.Marshal(c.Claims)
	if err != nil {
		return nil, err
	}
	return withName(claims, c.name)
}

func withName(object []byte, name string) ([]byte, error) {
	var fields map[string]any
	if err := json.Unmarshal(object, &fields); err != nil {
		return nil, err
	}
	fields["name"] = name
	return json.Marshal(fields)
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
			basicToForm(r)
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

// basicToForm gives the library, which reads a client's credentials from the form only, those a client sent
// in the Authorization header instead (client_secret_basic: OpenID Connect's default, which providers must accept).
func basicToForm(r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || r.Method != http.MethodPost || r.ParseForm() != nil || r.Form.Get("client_id") != "" {
		return
	}
	// RFC 6749 section 2.3.1: each is form-encoded before it is put in the header.
	if decoded, err := url.QueryUnescape(id); err == nil {
		id = decoded
	}
	if decoded, err := url.QueryUnescape(secret); err == nil {
		secret = decoded
	}
	r.Form.Set("client_id", id)
	r.Form.Set("client_secret", secret)
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
			http.Error(w, "expected {\"subject\", \"email\", \"groups\", \"name\"}", http.StatusBadRequest)
			return
		}
		known := &mockoidc.MockUser{Subject: u.Subject, Email: u.Email, EmailVerified: true,
			PreferredUsername: u.Subject, Groups: u.Groups}
		if u.Name == "" {
			provider.QueueUser(known)
		} else {
			provider.QueueUser(&namedUser{known, u.Name})
		}
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
