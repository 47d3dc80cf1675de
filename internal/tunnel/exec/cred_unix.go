//go:build unix

package exec

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// LookupCredential resolves user and group names (or numbers) to the
// credential a program runs as. The group defaults to the user's primary
// group. Only a server running as root can switch user: otherwise it is an
// error, unless the credential is the server's own.
func LookupCredential(userName, groupName string) (*Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	var c Credential
	uid, gid := os.Getuid(), os.Getgid()
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			if u, err = user.LookupId(userName); err != nil {
				return nil, fmt.Errorf("user %q: %w", userName, err)
			}
		}
		if uid, err = strconv.Atoi(u.Uid); err != nil {
			return nil, fmt.Errorf("user %q: uid %q: %w", userName, u.Uid, err)
		}
		if gid, err = strconv.Atoi(u.Gid); err != nil {
			return nil, fmt.Errorf("user %q: gid %q: %w", userName, u.Gid, err)
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if g, err = user.LookupGroupId(groupName); err != nil {
				return nil, fmt.Errorf("group %q: %w", groupName, err)
			}
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("group %q: gid %q: %w", groupName, g.Gid, err)
		}
	}
	if os.Geteuid() != 0 {
		if uid == os.Getuid() && gid == os.Getgid() {
			return nil, nil // already so; no switch needed
		}
		return nil, fmt.Errorf("user/group %s/%s: switching user needs the server to run as root (it runs as uid %d)", userName, groupName, os.Geteuid())
	}
	c.UID, c.GID = uint32(uid), uint32(gid)
	return &c, nil
}
