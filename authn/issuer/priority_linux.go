package issuer

import (
	"runtime"
	"syscall"
)

// lowPriority runs f on an OS thread of its own at the lowest CPU priority
// (nice 19) and waits for it. bcrypt is deliberately slow; at low priority
// a login flood yields the CPU to proxied traffic instead of sharing it.
// The thread is never handed back to the Go scheduler: raising its
// priority again needs a privilege the gateway does not have, so the
// goroutine exits while locked and the runtime ends the thread.
func lowPriority(f func()) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: see above.
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 19)
		defer close(done)
		f()
	}()
	<-done
}
