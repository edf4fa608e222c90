//! Tests of the configuration: defaults, every key, every mistake and where the file is looked for.

use super::*;

mod graph_url;

const FILE: &str = "/etc/graphbroker-test/config.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(FILE))
}

/// The error for `text`, checked to name the file and `key`; returns the message for further checks.
fn error_naming(text: &str, key: &str) -> String {
    let err = parse(text).expect_err(text);
    let message = err.to_string();
    assert!(message.starts_with(FILE), "names the file: {message}");
    assert!(message.contains(&format!("{key}: ")), "names {key}: {message}");
    message
}

#[test]
fn no_file_at_the_default_location_means_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load_from(None, |_| None, Some(dir.path().join("config.toml"))).unwrap();
    assert_eq!(config, Config::defaults());
    assert_eq!(config.source, None);
    assert_eq!(config.default_profile, "default");
    assert_eq!(config.keyring_service, "graphbroker");
    assert_eq!(config.http_timeout, Duration::from_secs(10));

    let profile = config.profile(None).unwrap();
    assert_eq!(profile.name, "default");
    assert_eq!(profile.authority.as_str(), "https://login.microsoftonline.com/common");
    assert_eq!(profile.tenant, "common");
    assert_eq!(profile.client_id, DEFAULT_CLIENT_ID);
    assert_eq!(profile.cloud, Cloud::Public);
    assert_eq!(profile.graph_resource, "https://graph.microsoft.com");
    assert_eq!(profile.flow, SignInFlow::Auto);
    assert_eq!(profile.scopes, ["User.Read"]);
    assert_eq!(profile.min_valid, Duration::from_secs(300));
    assert_eq!(profile.store, StoreKind::Auto);
    assert_eq!(profile.login_hint, None);
    assert!(!profile.cae);
    assert_eq!(profile.token_endpoint().as_str(), "https://login.microsoftonline.com/common/oauth2/v2.0/token");
    assert_eq!(
        profile.device_code_endpoint().as_str(),
        "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
    );
    assert_eq!(profile.authorize_endpoint().as_str(), "https://login.microsoftonline.com/common/oauth2/v2.0/authorize");
}

#[test]
fn the_keyring_service_default_is_the_stores() {
    assert_eq!(Config::defaults().keyring_service, graphbroker_store::DEFAULT_SERVICE);
}

#[test]
fn an_empty_file_means_the_defaults_read_from_it() {
    let config = parse("# nothing yet\n").unwrap();
    assert_eq!(config.source.as_deref(), Some(Path::new(FILE)));
    assert_eq!(Config { source: None, ..config }, Config::defaults());
}

#[test]
fn the_design_example_parses() {
    let config = parse(
        r#"
default_profile = "work"              # the profile used when a request names none ("default" if absent)

[profiles.work]
tenant = "contoso.onmicrosoft.com"    # common | organizations | consumers | a GUID | a domain
client_id = "00000000-0000-0000-0000-000000000000"
cloud = "public"                      # public | usgov | usgov-dod | china
# authority = "https://login.microsoftonline.com/contoso.onmicrosoft.com"   # replaces tenant + cloud
flow = "auto"                         # auto | browser | device
scopes = ["User.Read"]                # used when a request names none
min_valid = 300                       # seconds a served token must still be valid
store = "keyring"                     # keyring | memory
login_hint = "adele@contoso.com"
"#,
    )
    .unwrap();
    assert_eq!(config.default_profile, "work");
    assert_eq!(config.profiles.len(), 1);
    let work = config.profile(None).unwrap();
    assert_eq!(work, config.profile(Some("work")).unwrap());
    assert_eq!(work.name, "work");
    assert_eq!(work.authority.as_str(), "https://login.microsoftonline.com/contoso.onmicrosoft.com");
    assert_eq!(work.tenant, "contoso.onmicrosoft.com");
    assert_eq!(work.client_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(work.cloud, Cloud::Public);
    assert_eq!(work.flow, SignInFlow::Auto);
    assert_eq!(work.scopes, ["User.Read"]);
    assert_eq!(work.min_valid, Duration::from_secs(300));
    assert_eq!(work.store, StoreKind::Keyring);
    assert_eq!(work.login_hint.as_deref(), Some("adele@contoso.com"));
    assert_eq!(
        work.token_endpoint().as_str(),
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    assert!(config.profile(Some("default")).is_none());
}

#[test]
fn every_other_key_parses() {
    let config = parse(
        r#"
keyring_service = "graphbroker-test-42"
http_timeout = 5

[profiles.default]

[profiles.mail]
flow = "device"
scopes = ["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send"]
store = "memory"
cae = true
min_valid = 0
"#,
    )
    .unwrap();
    assert_eq!(config.keyring_service, "graphbroker-test-42");
    assert_eq!(config.http_timeout, Duration::from_secs(5));
    assert_eq!(config.default_profile, "default");
    assert_eq!(config.profile(None).unwrap(), &Profile::builtin("default"));
    let mail = config.profile(Some("mail")).unwrap();
    assert_eq!(mail.flow, SignInFlow::Device);
    assert_eq!(mail.store, StoreKind::Memory);
    assert!(mail.cae);
    assert_eq!(mail.min_valid, Duration::ZERO);
    assert_eq!(mail.scopes.len(), 2);
    assert!(config.profile(Some("nope")).is_none());
}

#[test]
fn a_default_profile_with_no_profiles_gets_the_builtin_defaults() {
    let config = parse("default_profile = \"me\"\n").unwrap();
    assert_eq!(config.default_profile, "me");
    assert_eq!(config.profile(None).unwrap(), &Profile::builtin("me"));
}

#[test]
fn clouds_map_to_their_login_host_and_graph() {
    let cases = [
        ("public", "https://login.microsoftonline.com/t1", "https://graph.microsoft.com"),
        ("usgov", "https://login.microsoftonline.us/t1", "https://graph.microsoft.us"),
        ("usgov-dod", "https://login.microsoftonline.us/t1", "https://dod-graph.microsoft.us"),
        ("china", "https://login.chinacloudapi.cn/t1", "https://microsoftgraph.chinacloudapi.cn"),
    ];
    for (name, authority, graph) in cases {
        let config = parse(&format!("[profiles.default]\ncloud = \"{name}\"\ntenant = \"t1\"\n")).unwrap();
        let profile = config.profile(None).unwrap();
        assert_eq!(profile.cloud.as_str(), name);
        assert_eq!(Cloud::from_name(name), Some(profile.cloud));
        assert_eq!(profile.authority.as_str(), authority, "{name}");
        assert_eq!(profile.graph_resource, graph, "{name}");
    }
}

#[test]
fn an_explicit_authority_is_trimmed_and_gives_tenant_and_cloud() {
    let config =
        parse("[profiles.default]\nauthority = \"https://login.microsoftonline.us/contoso.onmicrosoft.us/\"\n")
            .unwrap();
    let profile = config.profile(None).unwrap();
    assert_eq!(profile.authority.as_str(), "https://login.microsoftonline.us/contoso.onmicrosoft.us");
    assert_eq!(profile.tenant, "contoso.onmicrosoft.us");
    assert_eq!(profile.cloud, Cloud::UsGov);
    assert_eq!(profile.graph_resource, "https://graph.microsoft.us");
    assert_eq!(
        profile.authorize_endpoint().as_str(),
        "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/authorize"
    );

    let china = parse("[profiles.default]\nauthority = \"https://login.partner.microsoftonline.cn/t\"\n").unwrap();
    assert_eq!(china.profile(None).unwrap().cloud, Cloud::China);
}

#[test]
fn http_authority_is_allowed_only_to_loopback() {
    for authority in
        ["http://127.0.0.1:8400/common", "http://[::1]:8400/tenant/", "http://localhost:1/t", "http://127.0.0.2/t"]
    {
        let config = parse(&format!("[profiles.default]\nauthority = \"{authority}\"\n")).unwrap();
        let profile = config.profile(None).unwrap();
        assert!(!profile.authority.as_str().ends_with('/'), "{}", profile.authority);
        assert_eq!(profile.cloud, Cloud::Public);
        assert!(profile.token_endpoint().as_str().ends_with("/oauth2/v2.0/token"));
    }
    let config = parse("[profiles.default]\nauthority = \"http://127.0.0.1:8400/common\"\n").unwrap();
    assert_eq!(
        config.profile(None).unwrap().device_code_endpoint().as_str(),
        "http://127.0.0.1:8400/common/oauth2/v2.0/devicecode"
    );

    for authority in
        ["http://login.microsoftonline.com/common", "http://10.0.0.1/common", "http://localhost.evil.example/t"]
    {
        let message =
            error_naming(&format!("[profiles.default]\nauthority = \"{authority}\"\n"), "profiles.default.authority");
        assert!(message.contains("loopback"), "{message}");
    }
}

#[test]
fn each_mistake_names_the_file_the_key_and_what_is_allowed() {
    let cases: &[(&str, &str, &str)] = &[
        ("colour = \"blue\"\n", "colour", "unknown field"),
        ("[profiles.work]\nflw = \"auto\"\n", "profiles.work.flw", "unknown field"),
        ("[profiles.work]\nmin_valid = \"5m\"\n", "profiles.work.min_valid", "invalid type"),
        (
            "[profiles.default]\nflow = \"sideways\"\n",
            "profiles.default.flow",
            "unknown variant `sideways`, expected one of `device`, `browser`, `auto`",
        ),
        (
            "[profiles.default]\ncloud = \"mars\"\n",
            "profiles.default.cloud",
            "unknown variant `mars`, expected one of `public`, `usgov`, `usgov-dod`, `china`",
        ),
        (
            "[profiles.default]\nstore = \"file\"\n",
            "profiles.default.store",
            "unknown variant `file`, expected one of `keyring`, `memory`, `keyutils`, `auto`",
        ),
        ("[profiles.default]\nauthority = \"not a url\"\n", "profiles.default.authority", "not a URL"),
        ("[profiles.default]\nrolling_refresh = 7776000\n", "profiles.default.rolling_refresh", "inactivity limit"),
        ("notifications = \"yes\"\n", "notifications", "invalid type"),
        ("[profiles.default]\nauthority = \"ftp://x/t\"\n", "profiles.default.authority", "use https"),
        ("[profiles.default]\nauthority = \"https://h/t?x=1\"\n", "profiles.default.authority", "query"),
        ("[profiles.default]\nauthority = \"https://h/t#f\"\n", "profiles.default.authority", "fragment"),
        ("[profiles.default]\nauthority = \"https://h/\"\n", "profiles.default.authority", "names no tenant"),
        ("[profiles.default]\nauthority = \"https://u:p@h/t\"\n", "profiles.default.authority", "password"),
        (
            "[profiles.default]\nauthority = \"https://h/t\"\ntenant = \"t\"\n",
            "profiles.default.authority",
            "cannot be combined",
        ),
        (
            "[profiles.default]\nauthority = \"https://h/t\"\ncloud = \"china\"\n",
            "profiles.default.authority",
            "cannot be combined",
        ),
        ("[profiles.default]\nclient_id = \"\"\n", "profiles.default.client_id", "client) id"),
        ("[profiles.default]\nclient_id = \"a b\"\n", "profiles.default.client_id", "without spaces"),
        ("default_profile = \"home\"\n[profiles.work]\n", "default_profile", "add [profiles.home] or use one of work"),
        ("[profiles.work]\n[profiles.home]\n", "default_profile", "set default_profile to one of home, work"),
        ("[profiles.default]\nmin_valid = 86401\n", "profiles.default.min_valid", "at most 86400"),
        ("[profiles.default]\ntenant = \"contoso/evil\"\n", "profiles.default.tenant", "not a tenant"),
        ("[profiles.default]\ntenant = \"\"\n", "profiles.default.tenant", "not a tenant"),
        ("[profiles.default]\ntenant = \"a b\"\n", "profiles.default.tenant", "not a tenant"),
        ("[profiles.default]\nscopes = []\n", "profiles.default.scopes", "at least one scope"),
        ("[profiles.default]\nscopes = [\"User.Read Mail.Read\"]\n", "profiles.default.scopes", "own string"),
        ("[profiles.default]\nlogin_hint = \"\"\n", "profiles.default.login_hint", "must not be empty"),
        ("[profiles.\"my work\"]\n", "profiles.my work", "letters, digits"),
        ("default_profile = \"a.b\"\n", "default_profile", "letters, digits"),
        ("http_timeout = 0\n", "http_timeout", "between 1 and 600"),
        ("browser_timeout = 5\n", "browser_timeout", "between 10 and 3600"),
        ("browser_command = []\n", "browser_command", "must name a program"),
        ("[profiles.default]\nprompt = \"always\"\n", "profiles.default.prompt", "select_account"),
        ("http_timeout = 601\n", "http_timeout", "between 1 and 600"),
        ("keyring_service = \" \"\n", "keyring_service", "must not be empty"),
        ("[profiles.default]\ncae = \"yes\"\n", "profiles.default.cae", "invalid type"),
        (
            "[profiles.default]\ngraph_url = \"https://evil.example\"\n",
            "profiles.default.graph_url",
            "not a Microsoft Graph host",
        ),
        (
            "[profiles.default]\ngraph_url = \"http://graph.microsoft.com\"\n",
            "profiles.default.graph_url",
            "https://graph.microsoft.com",
        ),
        (
            "[profiles.default]\ngraph_url = \"https://graph.microsoft.com.evil.example\"\n",
            "profiles.default.graph_url",
            "not a Microsoft Graph host",
        ),
        (
            "[profiles.default]\ngraph_url = \"https://graph.microsoft.com/v1.0\"\n",
            "profiles.default.graph_url",
            "without a path",
        ),
        (
            "[profiles.default]\ngraph_url = \"https://u@graph.microsoft.com\"\n",
            "profiles.default.graph_url",
            "without a path, query or user",
        ),
        ("[profiles.default]\ngraph_url = \"graph\"\n", "profiles.default.graph_url", "not a URL"),
        (
            "[profiles.default]\ngraph_url = \"http://127.0.0.1:8400\"\n",
            "profiles.default.graph_url",
            "test_setup = true",
        ),
        (
            "[profiles.default]\ntenant = \"contoso.onmicrosoft.com\"\ngraph_url = \"http://[::1]:8400\"\ntest_setup = false\n",
            "profiles.default.graph_url",
            "a real identity platform",
        ),
    ];
    for (text, key, allowed) in cases {
        let message = error_naming(text, key);
        assert!(message.contains(allowed), "{text:?} should say {allowed:?}: {message}");
    }
}

#[test]
fn syntax_errors_give_the_line() {
    let err = parse("# first\n[profiles.work]\n\nflw = \"auto\"\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("{FILE}:4:1: profiles.work.flw: unknown field `flw`")), "{message}");
    assert!(message.contains("expected one of"), "{message}");

    let message = parse("[profiles.work\n").unwrap_err().to_string();
    assert!(message.starts_with(&format!("{FILE}:1:")), "{message}");

    let err = parse("[profiles.default]\nflow = \"sideways\"\n").unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{FILE}:2:8: profiles.default.flow: unknown variant `sideways`, expected one of `device`, `browser`, `auto`"
        )
    );
}

#[test]
fn enumerations_are_read_in_the_spelling_their_types_write() {
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::Error;

    for cloud in Cloud::ALL {
        let read = Cloud::deserialize(IntoDeserializer::<Error>::into_deserializer(cloud.as_str())).unwrap();
        assert_eq!(read, cloud);
        assert_eq!(Cloud::from_name(cloud.as_str()), Some(cloud));
        assert_eq!(cloud.to_string(), cloud.as_str());
        let config = parse(&format!("[profiles.default]\ncloud = \"{cloud}\"\n")).unwrap();
        assert_eq!(config.profile(None).unwrap().cloud, cloud);
    }
    for flow in SignInFlow::ALL {
        let config = parse(&format!("[profiles.default]\nflow = \"{flow}\"\n")).unwrap();
        assert_eq!(config.profile(None).unwrap().flow, flow);
    }
    for store in StoreKind::ALL {
        let parsed = parse(&format!("[profiles.default]\nstore = \"{store}\"\n"));
        if store == StoreKind::Keyutils && !cfg!(target_os = "linux") {
            assert!(parsed.unwrap_err().to_string().contains("Linux only"));
            continue;
        }
        assert_eq!(parsed.unwrap().profile(None).unwrap().store, store);
    }
}

/// Three files with different `keyring_service`s, to see which one was read.
fn three_files(dir: &Path) -> [PathBuf; 3] {
    ["flag", "env", "default"].map(|name| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, format!("keyring_service = \"{name}\"\n")).unwrap();
        path
    })
}

fn env_with(value: &Path) -> impl Fn(&str) -> Option<OsString> {
    let value = value.as_os_str().to_owned();
    move |name| (name == CONFIG_ENV).then(|| value.clone())
}

#[test]
fn the_command_line_wins_over_the_environment_over_the_default_location() {
    let dir = tempfile::tempdir().unwrap();
    let [flag, env, default] = three_files(dir.path());
    let read = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<OsString>| {
        let config = Config::load_from(explicit, env, Some(default.clone())).unwrap();
        assert_eq!(
            config.source.as_ref().map(|p| p.file_stem().unwrap().to_owned()),
            Some(config.keyring_service.clone().into())
        );
        config.keyring_service
    };
    assert_eq!(read(Some(&flag), &env_with(&env)), "flag");
    assert_eq!(read(None, &env_with(&env)), "env");
    assert_eq!(read(None, &|_| None), "default");
    assert_eq!(read(None, &|_| Some(OsString::new())), "default", "an empty variable counts as unset");
}

#[test]
fn a_missing_file_that_was_named_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");

    let err = Config::load_from(Some(&missing), |_| None, None).unwrap_err();
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("missing.toml") && message.contains("command line"), "{message}");

    let message = Config::load_from(None, env_with(&missing), None).unwrap_err().to_string();
    assert!(message.contains("missing.toml") && message.contains("$GRAPHBROKER_CONFIG"), "{message}");
}

#[test]
fn no_home_directory_means_the_defaults() {
    assert_eq!(Config::load_from(None, |_| None, None).unwrap(), Config::defaults());
}

#[test]
fn an_unreadable_file_is_an_error_even_at_the_default_location() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: reading it fails with something other than NotFound.
    let err = Config::load_from(None, |_| None, Some(dir.path().to_path_buf())).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn a_bad_file_at_the_default_location_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[profiles.default]\nflow = \"telepathy\"\n").unwrap();
    let message = Config::load_from(None, |_| None, Some(path.clone())).unwrap_err().to_string();
    assert!(message.starts_with(&path.display().to_string()), "{message}");
    assert!(message.contains("profiles.default.flow"), "{message}");
}

#[test]
fn default_path_is_under_the_config_dir() {
    if let Some(path) = default_path() {
        assert!(path.ends_with("graphbroker/config.toml"), "{}", path.display());
    }
}

#[test]
fn a_config_writable_by_group_or_others_is_refused_with_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "keyring_service = \"mine\"\n").unwrap();
    for mode in [0o600, 0o644, 0o400] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        assert_eq!(Config::load_from(Some(&path), |_| None, None).unwrap().keyring_service, "mine", "{mode:o}");
    }
    for mode in [0o664, 0o646, 0o666, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Config::load_from(Some(&path), |_| None, None).unwrap_err();
        assert!(matches!(err, ConfigError::Permissions { mode: found, .. } if found == mode), "{err:?}");
        let message = err.to_string();
        let expected = format!("bad owner or permissions on config file {}: owned by uid", path.display());
        assert!(message.starts_with(&expected), "{message}");
        assert!(message.contains(&format!("with mode {mode:04o}")), "{message}");
    }
}

#[test]
fn a_config_owned_by_another_user_is_refused_and_one_owned_by_root_accepted() {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    if std::fs::metadata(&path).unwrap().uid() == 0 {
        // Root owns what it writes, and root-owned files are accepted for any user, as ssh accepts them.
        assert!(check_ownership(&path, &std::fs::metadata(&path).unwrap(), 1000).is_ok());
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }
    let meta = std::fs::metadata(&path).unwrap();
    let owner = meta.uid();
    assert!(check_ownership(&path, &meta, owner).is_ok());
    // Seen by another user (never root): the file is foreign to them.
    let viewer = owner + 1;
    let message = check_ownership(&path, &meta, viewer).unwrap_err().to_string();
    assert!(message.contains(&format!("owned by uid {owner} with mode 0644")), "{message}");
    assert!(message.contains(&format!("owned by you (uid {viewer})")), "{message}");
}

#[test]
fn a_config_chowned_to_another_user_is_refused_by_load() {
    if !nix::unistd::getuid().is_root() {
        if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
            panic!("a_config_chowned_to_another_user_is_refused_by_load: not root but GRAPHBROKER_TEST_ROOT=required");
        }
        eprintln!("skipping a_config_chowned_to_another_user_is_refused_by_load: needs root to chown");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "").unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let message = Config::load_from(Some(&path), |_| None, None).unwrap_err().to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("owned by uid 65534 with mode 0"), "{message}");
}
