//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package projections

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fileLock is an flock(2) on a lock file. The kernel releases it when the
// process dies, so a crash never leaves a stale lock behind. Locks are per
// open file, so a second open in the same process conflicts too.
type fileLock struct{ f *os.File }

func lockFile(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &fileLock{f}, nil
}

// unlock releases the lock. The lock file stays: removing it would let two
// processes lock different files of the same name.
func (l *fileLock) unlock() { l.f.Close() }
