package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// AllowList is the set of targets a dynamically chosen target (token file,
// ticket, placeholder) may name. Entries are "<cidr>[:<ports>]",
// "<ip>[:<ports>]", "<host>[:<ports>]" ("*.example.com" matches any
// subdomain), or "unix/<path>". Ports are a port, a range "5900-5999", or a
// comma list of those; no ports means any port. IPv6 with ports:
// "[fd00::/8]:22".
type AllowList struct {
	entries []allowEntry
}

type allowEntry struct {
	prefix netip.Prefix // valid for address entries
	host   string       // lowercased host name pattern for name entries
	unix   string       // socket path for unix entries
	ports  []portRange  // empty: any port
}

type portRange struct{ lo, hi int }

// ParseAllowList parses the entries; an empty list allows nothing.
func ParseAllowList(entries []string) (*AllowList, error) {
	al := &AllowList{}
	for _, e := range entries {
		ent, err := parseAllowEntry(e)
		if err != nil {
			return nil, err
		}
		al.entries = append(al.entries, ent)
	}
	return al, nil
}

func parseAllowEntry(s string) (allowEntry, error) {
	orig := s
	if strings.HasPrefix(s, "unix/") {
		if len(s) == len("unix/") {
			return allowEntry{}, fmt.Errorf("allow %q: empty socket path", orig)
		}
		return allowEntry{unix: strings.TrimPrefix(s, "unix/")}, nil
	}
	var ent allowEntry
	hostPart, portPart := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return ent, fmt.Errorf("allow %q: missing ]", orig)
		}
		hostPart = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return ent, fmt.Errorf("allow %q: want [addr]:ports", orig)
			}
			portPart = rest[1:]
			if portPart == "" {
				return ent, fmt.Errorf("allow %q: empty port list", orig)
			}
		}
	case strings.Count(s, ":") == 1:
		i := strings.LastIndex(s, ":")
		hostPart, portPart = s[:i], s[i+1:]
		if portPart == "" {
			return ent, fmt.Errorf("allow %q: empty port list", orig)
		}
	}
	if hostPart == "" {
		return ent, fmt.Errorf("allow %q: empty host", orig)
	}
	if portPart != "" {
		for _, pr := range strings.Split(portPart, ",") {
			r, err := parsePortRange(pr)
			if err != nil {
				return ent, fmt.Errorf("allow %q: %w", orig, err)
			}
			ent.ports = append(ent.ports, r)
		}
	}
	if strings.Contains(hostPart, "/") {
		p, err := netip.ParsePrefix(hostPart)
		if err != nil {
			return ent, fmt.Errorf("allow %q: bad CIDR: %w", orig, err)
		}
		ent.prefix = p.Masked()
		return ent, nil
	}
	if ip, err := netip.ParseAddr(hostPart); err == nil {
		ent.prefix = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		return ent, nil
	}
	h := strings.ToLower(hostPart)
	if strings.ContainsAny(h, " \t{}\\") || strings.Contains(h[min(1, len(h)):], "*") || (strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.")) {
		return ent, fmt.Errorf("allow %q: invalid host name", orig)
	}
	ent.host = h
	return ent, nil
}

func parsePortRange(s string) (portRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(lo)
	if err != nil || a < 1 || a > 65535 {
		return portRange{}, fmt.Errorf("bad port %q", s)
	}
	b := a
	if isRange {
		b, err = strconv.Atoi(hi)
		if err != nil || b < a || b > 65535 {
			return portRange{}, fmt.Errorf("bad port range %q", s)
		}
	}
	return portRange{a, b}, nil
}

// Empty reports whether the list has no entries.
func (al *AllowList) Empty() bool { return al == nil || len(al.entries) == 0 }

func (e allowEntry) portOK(p int) bool {
	if len(e.ports) == 0 {
		return true
	}
	for _, r := range e.ports {
		if p >= r.lo && p <= r.hi {
			return true
		}
	}
	return false
}

func (e allowEntry) hostMatches(h string) bool {
	if e.host == "" {
		return false
	}
	if strings.HasPrefix(e.host, "*.") {
		return strings.HasSuffix(h, e.host[1:]) && len(h) > len(e.host)-1
	}
	return h == e.host
}

// Resolver looks up host names; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Check reports whether t may be dialled. An IP target must fall in an
// address entry with its port; a host name target must match a name entry,
// or else every address it resolves to must be allowed, in which case the
// returned target names the first checked address so that the dial cannot
// be steered elsewhere by a second lookup (DNS rebinding).
func (al *AllowList) Check(ctx context.Context, r Resolver, t Target) (Target, error) {
	if al.Empty() {
		return t, fmt.Errorf("target %s: not in allow list (empty)", t)
	}
	if t.Network == "unix" {
		for _, e := range al.entries {
			if e.unix != "" && e.unix == t.Path {
				return t, nil
			}
		}
		return t, fmt.Errorf("target %s: not in allow list", t)
	}
	if ip, err := netip.ParseAddr(t.Host); err == nil {
		if al.ipAllowed(ip.Unmap(), t.Port) {
			return t, nil
		}
		return t, fmt.Errorf("target %s: not in allow list", t)
	}
	h := strings.ToLower(strings.TrimSuffix(t.Host, "."))
	for _, e := range al.entries {
		if e.hostMatches(h) && e.portOK(t.Port) {
			return t, nil
		}
	}
	if r == nil {
		return t, fmt.Errorf("target %s: not in allow list", t)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", t.Host)
	if err != nil || len(addrs) == 0 {
		return t, fmt.Errorf("target %s: not in allow list (lookup: %v)", t, err)
	}
	for _, a := range addrs {
		if !al.ipAllowed(a.Unmap(), t.Port) {
			return t, fmt.Errorf("target %s: address %s not in allow list", t, a)
		}
	}
	pinned := t
	pinned.Host = addrs[0].Unmap().String()
	return pinned, nil
}

func (al *AllowList) ipAllowed(ip netip.Addr, port int) bool {
	for _, e := range al.entries {
		if e.prefix.IsValid() && e.prefix.Contains(ip) && e.portOK(port) {
			return true
		}
	}
	return false
}
