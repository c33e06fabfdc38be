package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// sample is one sample line of the Prometheus text exposition format.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// promSnapshot is every sample of one scrape.
type promSnapshot []sample

// parseSamples parses the Prometheus text format; comment lines are
// skipped, and a line that does not parse is an error.
func parseSamples(text string) (promSnapshot, error) {
	var out promSnapshot
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("bench: metrics line %d: %w", n+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSample parses `name{k="v",...} value [timestamp]`.
func parseSample(line string) (sample, error) {
	s := sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, errors.New("no value")
	}
	s.Name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, " ,")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			k, rest, ok := strings.Cut(line, "=\"")
			if !ok || k == "" {
				return s, errors.New("bad label")
			}
			var v strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(rest[j])
					}
					continue
				}
				if c == '"' {
					line, closed = rest[j+1:], true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return s, errors.New("unterminated label value")
			}
			s.Labels[strings.TrimSpace(k)] = v.String()
		}
	}
	f := strings.Fields(line)
	if len(f) < 1 || len(f) > 2 {
		return s, errors.New("want a value and an optional timestamp")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("bad value %q", f[0])
	}
	s.Value = v
	return s, nil
}

// sum adds the values of every sample called name whose labels include
// all of match.
func (p promSnapshot) sum(name string, match map[string]string) float64 {
	var total float64
outer:
	for _, s := range p {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue outer
			}
		}
		total += s.Value
	}
	return total
}

// values returns the value of every sample called name, keyed by the
// value of its label key.
func (p promSnapshot) values(name, key string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range p {
		if s.Name == name {
			out[s.Labels[key]] += s.Value
		}
	}
	return out
}

// scrape reads the metrics at url.
func scrape(ctx context.Context, url string) (promSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: metrics: %s answered %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	return parseSamples(string(body))
}
