//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package projections

// fileLock is a no-op where flock(2) is not available: there, nothing stops
// Rebuild from running under a live server, so the operator must stop it.
type fileLock struct{}

func lockFile(path string) (*fileLock, error) { return &fileLock{}, nil }

func (l *fileLock) unlock() {}
