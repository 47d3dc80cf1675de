//go:build !unix

package testcaddy

import "os/exec"

func ownGroup(*exec.Cmd) {}

// terminate kills: there is no SIGTERM to send outside Unix.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
