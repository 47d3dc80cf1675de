package exec

import (
	"net"
	"net/http"
	"strings"
)

// DefaultPath is the PATH a program gets unless an env line sets one.
const DefaultPath = "/usr/local/bin:/usr/bin:/bin"

// ServerSoftware is the SERVER_SOFTWARE value.
const ServerSoftware = "caddyws"

// Request is what the environment tells a program about its connection.
type Request struct {
	HTTP *http.Request
	// User is the authenticated user ("" when anonymous).
	User string
	// PassHeaders are the request headers passed as HTTP_<NAME>.
	PassHeaders []string
	// Env are the configured NAME=value pairs, already replaced; they come
	// last and so override the standard variables.
	Env [][2]string
}

// Environ builds a program's whole environment: the CGI-style variables
// websocketd sets (RFC 3875), HTTP_* for the allowed headers only, then the
// configured pairs. Nothing comes from the server's own environment.
// Values lose NUL bytes and have line breaks turned into spaces.
func Environ(req Request) []string {
	r := req.HTTP
	remoteHost, remotePort, _ := net.SplitHostPort(r.RemoteAddr)
	serverName, serverPort, err := net.SplitHostPort(r.Host)
	if err != nil {
		serverName, serverPort = r.Host, "80"
		if r.TLS != nil {
			serverPort = "443"
		}
	}
	env := make([]string, 0, 20+len(req.PassHeaders)+len(req.Env))
	add := func(k, v string) { env = append(env, k+"="+clean(v)) }
	add("PATH", DefaultPath)
	add("SERVER_SOFTWARE", ServerSoftware)
	add("GATEWAY_INTERFACE", "CGI/1.1")
	add("SERVER_PROTOCOL", r.Proto)
	add("SERVER_NAME", serverName)
	add("SERVER_PORT", serverPort)
	add("REMOTE_ADDR", remoteHost)
	add("REMOTE_PORT", remotePort)
	add("REQUEST_METHOD", r.Method)
	add("REQUEST_URI", r.URL.RequestURI())
	add("QUERY_STRING", r.URL.RawQuery)
	add("REMOTE_USER", req.User)
	if r.TLS != nil {
		add("HTTPS", "on")
	}
	for _, h := range req.PassHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			add("HTTP_"+HeaderVar(h), strings.Join(v, ", "))
		}
	}
	for _, kv := range req.Env {
		add(kv[0], kv[1])
	}
	return env
}

// HeaderVar is the CGI name of a header: upper case, dashes as
// underscores ("X-Forwarded-User" -> "X_FORWARDED_USER").
func HeaderVar(h string) string {
	return strings.ToUpper(strings.ReplaceAll(h, "-", "_"))
}

var cleaner = strings.NewReplacer("\x00", "", "\r", " ", "\n", " ")

func clean(v string) string { return cleaner.Replace(v) }
