//go:build !unix

package exec

import (
	"fmt"
	"runtime"
)

// LookupCredential: running a program as another user is not supported on
// this system.
func LookupCredential(userName, groupName string) (*Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	return nil, fmt.Errorf("user and group are not supported on %s", runtime.GOOS)
}
