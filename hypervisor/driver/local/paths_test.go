package local

import (
	"path/filepath"
	"testing"
)

func TestDefaultPaths(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		system bool
		want   Paths
	}{
		{"VSH_HOME relocates system", map[string]string{"VSH_HOME": "/v"}, true, Paths{"/v/etc", "/v/lib", "/v/run"}},
		{"VSH_HOME relocates session", map[string]string{"VSH_HOME": "/v"}, false, Paths{"/v/etc", "/v/lib", "/v/run"}},
		{"system", nil, true, Paths{"/etc/vsh", "/var/lib/vsh", "/run/vsh"}},
		{"session XDG", map[string]string{"XDG_CONFIG_HOME": "/c", "XDG_DATA_HOME": "/d", "XDG_RUNTIME_DIR": "/r"}, false,
			Paths{"/c/vsh", "/d/vsh", "/r/vsh"}},
		{"session fallbacks", map[string]string{"HOME": "/h"}, false,
			Paths{"/h/.config/vsh", "/h/.local/share/vsh", "/h/.cache/vsh/run"}},
		{"relative XDG ignored", map[string]string{"HOME": "/h", "XDG_DATA_HOME": "rel"}, false,
			Paths{"/h/.config/vsh", "/h/.local/share/vsh", "/h/.cache/vsh/run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"VSH_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"} {
				t.Setenv(k, "")
			}
			t.Setenv("HOME", "/h")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := DefaultPaths(tt.system)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []*string{&got.Config, &got.State, &got.Run} {
				*p = filepath.Clean(*p)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
