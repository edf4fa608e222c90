//! Tests of a profile's `graph_url` (its default, the hosts it takes, the pairing with a real cloud's sign-in)
//! and `rolling_refresh`.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/graphbroker-test/config.toml"))
}

#[test]
fn a_real_clouds_sign_in_with_a_loopback_graph_needs_test_setup() {
    let text = "[profiles.default]\ngraph_url = \"http://localhost:8400\"\ntest_setup = true\n";
    let config = parse(text).unwrap();
    let profile = config.profile(None).unwrap();
    assert_eq!(profile.graph_url.as_str(), "http://localhost:8400/");
    assert_eq!(profile.authority.host_str(), Some("login.microsoftonline.com"));
    assert!(parse(&text.replace("test_setup = true\n", "")).is_err(), "the key is what allows it");
}

#[test]
fn graph_url_defaults_to_the_clouds_graph_and_takes_graph_hosts_or_a_loopback_stand_in() {
    let config = parse("default_profile = \"gov\"\n[profiles.gov]\ncloud = \"usgov\"\n[profiles.mine]\ngraph_url = \"https://dod-graph.microsoft.us\"\n[profiles.local]\nauthority = \"http://127.0.0.1:8400/common\"\ngraph_url = \"http://127.0.0.1:8400\"\n").unwrap();
    assert_eq!(config.profile(Some("gov")).unwrap().graph_url.as_str(), "https://graph.microsoft.us/");
    assert_eq!(config.profile(Some("mine")).unwrap().graph_url.as_str(), "https://dod-graph.microsoft.us/");
    assert_eq!(config.profile(Some("local")).unwrap().graph_url.as_str(), "http://127.0.0.1:8400/");
    assert_eq!(Profile::builtin("x").graph_url.as_str(), "https://graph.microsoft.com/");
}

#[test]
fn rolling_refresh_defaults_to_a_week_and_zero_turns_it_off() {
    let config = parse("notifications = true\n[profiles.default]\n[profiles.off]\nrolling_refresh = 0\n[profiles.fast]\nrolling_refresh = 60\n").unwrap();
    assert!(config.notifications);
    assert!(!Config::defaults().notifications);
    assert_eq!(config.profiles["default"].rolling_refresh, Some(super::DEFAULT_ROLLING_REFRESH));
    assert_eq!(config.profiles["off"].rolling_refresh, None);
    assert_eq!(config.profiles["fast"].rolling_refresh, Some(Duration::from_secs(60)));
}
