package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadWorkConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		dev     bool
		wantErr string
	}{
		{"work needs an SMTP host", nil, false, "BAZAAR_SMTP_HOST"},
		{"dev does not", nil, true, ""},
		{"bad TLS mode", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_SMTP_TLS": "maybe"}, false, "BAZAAR_SMTP_TLS"},
		{"bad delay", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_FOLLOWUP_DELAY": "soon"}, false, "BAZAAR_FOLLOWUP_DELAY"},
		{"zero concurrency", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_WORKER_CONCURRENCY": "0"}, false, "BAZAAR_WORKER_CONCURRENCY"},
		{"complete", map[string]string{"BAZAAR_SMTP_HOST": "mail", "BAZAAR_SMTP_PORT": "465", "BAZAAR_SMTP_TLS": "tls", "BAZAAR_FOLLOWUP_DELAY": "2m"}, false, ""},
	}
	for _, tc := range tests {
		wc, err := loadWorkConfig(envOf(tc.env), tc.dev)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%s: error %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "complete" && (wc.SMTP.Port != 465 || wc.FollowUpDelay != 2*time.Minute) {
			t.Fatalf("complete: got %+v", wc)
		}
	}
}

func TestDevMailPartsAndMonitor(t *testing.T) {
	t.Parallel()
	wc, err := loadWorkConfig(envOf(map[string]string{"BAZAAR_DEV_SMTP_ADDR": "127.0.0.1:0"}), true)
	if err != nil {
		t.Fatal(err)
	}
	sink, mailer, err := devMailParts(wc, nil)
	if err != nil || sink == nil || mailer == nil {
		t.Fatalf("dev mail parts: %v %v %v", sink, mailer, err)
	}
	if err := sink.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	wc.SMTP.Host = "mail.example"
	if sink, _, _ := devMailParts(wc, nil); sink != nil {
		t.Fatal("a configured SMTP host needs no sink")
	}
	mon, err := newMonitor(Config{RedisURL: "redis://127.0.0.1:6379/3"})
	if err != nil {
		t.Fatal(err)
	}
	if mon.RootPath() != "/monitor" {
		t.Fatalf("root %q", mon.RootPath())
	}
	_ = mon.Close()
}
