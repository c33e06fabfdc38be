package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat, read once from the auxiliary vector (AT_CLKTCK) and 100
// (the Linux default on every common architecture) when that fails.
func clockTicks() int64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for i := 0; i+16 <= len(b); i += 16 {
		k, v := binary.NativeEndian.Uint64(b[i:]), binary.NativeEndian.Uint64(b[i+8:])
		if k == atClkTck && v > 0 && v < 1e6 {
			return int64(v)
		}
		if k == 0 {
			break
		}
	}
	return 100
}

// parseStatCPU returns utime+stime in ticks from the contents of a
// /proc/PID/stat file, and the parent pid. The command name is skipped by
// its last ')', since it may itself hold spaces and parentheses.
func parseStatCPU(b []byte) (ticks int64, ppid int, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("bench: /proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15).
	if len(f) < 13 {
		return 0, 0, errors.New("bench: /proc stat: too few fields")
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, fmt.Errorf("bench: /proc stat: ppid: %w", err)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("bench: /proc stat: utime/stime: %w", err)
	}
	return u + s, ppid, nil
}

// cpuMeter reads the CPU time a process has used (all its threads, user
// and system) from /proc/PID/stat. With children set it adds every live
// child process (nginx's workers under its master). It is safe for
// concurrent use.
type cpuMeter struct {
	pid      int
	children bool
	tick     time.Duration
}

func newCPUMeter(pid int, children bool) *cpuMeter {
	return &cpuMeter{pid: pid, children: children, tick: time.Second / time.Duration(clockTicks())}
}

// Read returns the CPU time used so far.
func (m *cpuMeter) Read() (time.Duration, error) {
	pids := []int{m.pid}
	if m.children {
		pids = append(pids, childPIDs(m.pid)...)
	}
	var total int64
	for i, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil && i > 0 {
			continue // a child ended while we looked
		}
		if err != nil {
			return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
		}
		t, _, err := parseStatCPU(b)
		if err != nil {
			return 0, err
		}
		total += t
	}
	return time.Duration(total) * m.tick, nil
}

// memStatus is a process's resident memory from /proc/PID/status.
type memStatus struct {
	RSS, HWM uint64 // bytes: VmRSS (now) and VmHWM (peak)
	// Anon is RssAnon: the part of RSS that is the process's own memory
	// (heap, stacks), without the pages of its executable the kernel has
	// mapped (RssFile), which are shared and can be dropped.
	Anon uint64
}

// readMem reads VmRSS and VmHWM of pid.
func readMem(pid int) (memStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memStatus{}, fmt.Errorf("bench: read memory: %w", err)
	}
	return parseMemStatus(b)
}

// resetPeak resets pid's VmHWM to its current RSS (clear_refs 5), so a
// later peak reflects only what came after.
func resetPeak(pid int) error {
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("bench: reset peak memory: %w", err)
	}
	return nil
}

// childPIDs returns the live children of pid.
func childPIDs(pid int) []int {
	var out []int
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if _, ppid, err := parseStatCPU(b); err == nil && ppid == pid {
			if n, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// parseMemStatus parses the VmRSS, VmHWM and RssAnon lines of a /proc
// status file.
func parseMemStatus(b []byte) (memStatus, error) {
	var m memStatus
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM" && k != "RssAnon") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("bench: bad %s line %q", k, sc.Text())
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("bench: bad %s line: %w", k, err)
		}
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "VmHWM":
			m.HWM = n << 10
		default:
			m.Anon = n << 10
		}
		seen++
	}
	if seen != 3 {
		return m, errors.New("bench: VmRSS, VmHWM or RssAnon missing from status")
	}
	return m, nil
}
