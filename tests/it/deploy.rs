//! The deployment template against what the function really needs: every `K2MC__…` variable it
//! sets is a config key (the config rejects unknown keys), the packaged config plus those
//! variables is a complete config, every secret reference has exactly its `GetSecretValue`
//! grant, the bucket grants are exactly the actions the staging code calls, on its prefix only,
//! and nothing is granted on `*` but the network-interface actions EC2 cannot scope. The template
//! is read with cfn-lint's own parser (the one `cfn-lint` checks it with).

use std::collections::BTreeSet;
use std::process::Command;

use harness::{python, repo_root};
use serde_json::{Value, json};

const DECODE: &str = "import json, sys\nfrom cfnlint.decode import decode\ntemplate, problems = decode(sys.argv[1])\nassert not problems, problems\nprint(json.dumps(template))";

fn template() -> Value {
    let path = repo_root().join("infra/sam/template.yaml");
    let out = Command::new(python().unwrap())
        .args(["-c", DECODE])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every string inside `v` (through intrinsic functions), with `${Param}` of `Fn::Sub` kept.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| strings(i, out)),
        _ => {}
    }
}

/// The literal strings of a value: what could end up in the variable (not the names of `Ref`s
/// or of `Fn::If` conditions).
fn literals(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| literals(i, out)),
        Value::Object(map) if map.contains_key("Ref") => {}
        Value::Object(map) => {
            for (k, i) in map {
                match (k.as_str(), i) {
                    ("Fn::If", Value::Array(branches)) => {
                        branches.iter().skip(1).for_each(|b| literals(b, out))
                    }
                    _ => literals(i, out),
                }
            }
        }
        _ => {}
    }
}

/// The names a value refers to with `Ref` (and `${Name}` inside `Fn::Sub`).
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("Ref") {
                out.insert(name.clone());
            }
            if let Some(sub) = map.get("Fn::Sub") {
                let mut texts = Vec::new();
                strings(sub, &mut texts);
                for t in texts {
                    for piece in t.split("${").skip(1) {
                        if let Some((name, _)) = piece.split_once('}') {
                            out.insert(name.to_owned());
                        }
                    }
                }
            }
            map.values().for_each(|i| refs(i, out));
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

/// A sample value for a variable, as the template would set it (references are references).
fn sample(name: &str, value: &Value) -> String {
    let mut texts = Vec::new();
    strings(value, &mut texts);
    if let Some(t) = texts.iter().find(|t| t.starts_with("secretsmanager:")) {
        return t.replace("${", "").replace('}', "");
    }
    match name {
        "K2MC__KAFKA__TOPICS" | "K2MC__KAFKA__BOOTSTRAP" => r#"["x:9092"]"#.into(),
        "K2MC__KAFKA__SASL__MECHANISM" => "scram-sha-512".into(),
        "K2MC__MAXCOMPUTE__ENDPOINT" => {
            "https://service.cn-hangzhou.maxcompute.aliyun.com/api".into()
        }
        // The parameters' defaults, as the template turns them into config values.
        "K2MC__LOAD__INTERVAL" => "60s".into(),
        "K2MC__LOAD__MIN_BYTES" => "256MiB".into(),
        _ => "from-the-template".into(),
    }
}

/// `(actions, resources)` of every statement of the function's role, through `Fn::If`.
fn statements(t: &Value) -> Vec<(Vec<String>, Value)> {
    fn collect(v: &Value, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(map) if map.contains_key("Action") => {
                let mut actions = Vec::new();
                strings(&map["Action"], &mut actions);
                out.push((actions, map.get("Resource").cloned().unwrap_or(Value::Null)));
            }
            Value::Object(map) => map.values().for_each(|i| collect(i, out)),
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(
        &t["Resources"]["FunctionRole"]["Properties"]["Policies"],
        &mut out,
    );
    out
}

#[test]
fn the_template_sets_only_config_keys_and_completes_the_packaged_config() {
    let t = template();
    let vars = t["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap();
    let mut env = Vec::new();
    for (name, value) in vars {
        if name.starts_with(k2mc::config::ENV_PREFIX) {
            env.push((name.clone(), sample(name, value)));
        } else {
            // Variables the binary itself reads.
            assert!(
                ["K2MC_CONFIG", "RUST_LOG"].contains(&name.as_str()),
                "{name}: the function does not read this variable"
            );
        }
        // Secrets are never values in the environment, only references to them.
        let mut texts = Vec::new();
        literals(value, &mut texts);
        if ["ACCESS", "PASSWORD", "TOKEN", "__TLS__"]
            .iter()
            .any(|secret| name.contains(secret))
        {
            assert!(
                !texts.is_empty() && texts.iter().all(|t| t.starts_with("secretsmanager:")),
                "{name} is not a secret reference: {value}"
            );
        }
    }
    let packaged = std::fs::read_to_string(repo_root().join("infra/sam/k2mc.toml")).unwrap();
    // An unknown key is an error that names it.
    let config =
        k2mc::config::Config::parse(&packaged, env.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.kafka.sasl.is_some(),
        "the SASL variables build kafka.sasl"
    );
    assert_eq!(config.staging.bucket, "from-the-template");
    // The config names its transforms relative to itself; the package puts them there.
    for stage in &config.transforms {
        assert!(
            stage.wasm.starts_with("transforms"),
            "{}",
            stage.wasm.display()
        );
    }
}

#[test]
fn the_role_grants_what_the_function_uses_and_no_more() {
    let t = template();
    let statements = statements(&t);

    // The bucket: exactly the staging code's actions, on the prefix (objects) or with a prefix
    // condition (list).
    let granted: BTreeSet<String> = statements
        .iter()
        .flat_map(|(a, _)| a.iter().filter(|a| a.starts_with("s3:")).cloned())
        .collect();
    let used: BTreeSet<String> = k2mc::staging::S3_ACTIONS
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    assert_eq!(granted, used, "S3 grants differ from what staging.rs calls");
    let staging = &t["Resources"]["FunctionRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PolicyName"] == "staging")
        .unwrap()["PolicyDocument"]["Statement"];
    let mut texts = Vec::new();
    strings(&staging[0]["Resource"], &mut texts);
    assert!(
        texts.iter().any(|t| t.ends_with("/${StagingPrefix}/*")),
        "{texts:?}"
    );
    assert_eq!(
        staging[1]["Condition"]["StringLike"]["s3:prefix"],
        json!({"Fn::Sub": "${StagingPrefix}/*"})
    );

    // Secrets: every reference the function resolves, and every secret an event source mapping
    // uses, has its grant; nothing else is granted.
    let mut referenced = BTreeSet::new();
    for value in t["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap()
        .values()
    {
        let mut texts = Vec::new();
        strings(value, &mut texts);
        if texts.iter().any(|t| t.starts_with("secretsmanager:")) {
            refs(value, &mut referenced);
        }
    }
    for mapping in ["MskTrigger", "SelfManagedTrigger"] {
        refs(
            &t["Resources"][mapping]["Properties"]["SourceAccessConfigurations"],
            &mut referenced,
        );
    }
    referenced.retain(|name| name.ends_with("SecretArn"));
    let mut secret_grants = BTreeSet::new();
    for (actions, resource) in &statements {
        if actions.iter().any(|a| a.starts_with("secretsmanager:")) {
            assert_eq!(actions, &["secretsmanager:GetSecretValue"]);
            refs(resource, &mut secret_grants);
        }
    }
    assert_eq!(
        secret_grants, referenced,
        "secret grants differ from the secrets used"
    );

    // Logs: only the function's own log group. Kafka: only the one cluster.
    for (actions, resource) in &statements {
        if actions.iter().any(|a| a.starts_with("logs:")) {
            assert_eq!(
                resource,
                &json!({"Fn::GetAtt": ["FunctionLogGroup", "Arn"]})
            );
        }
        if actions.iter().any(|a| a.starts_with("kafka:")) {
            assert_eq!(resource, &json!({"Ref": "MskClusterArn"}));
        }
        // No wildcard actions; `*` resources only where EC2 cannot scope the action.
        assert!(actions.iter().all(|a| !a.contains('*')), "{actions:?}");
        if resource == &json!("*") {
            assert!(
                actions.iter().all(|a| a.starts_with("ec2:")),
                "{actions:?} granted on *"
            );
        }
    }
    let services: BTreeSet<&str> = statements
        .iter()
        .flat_map(|(a, _)| a.iter().filter_map(|a| a.split_once(':').map(|s| s.0)))
        .collect();
    assert_eq!(
        services,
        [
            "ec2",
            "kafka",
            "kafka-cluster",
            "logs",
            "s3",
            "secretsmanager",
            "sns"
        ]
        .into_iter()
        .collect(),
        "a service the function does not use"
    );
}

#[test]
fn the_bucket_is_private_encrypted_tls_only_and_keeps_the_log() {
    let t = template();
    let bucket = &t["Resources"]["StagingBucket"]["Properties"];
    assert!(
        bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            .is_string()
    );
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    let policy = &t["Resources"]["StagingBucketPolicy"]["Properties"]["PolicyDocument"];
    assert_eq!(
        policy["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"],
        "false"
    );
    assert_eq!(policy["Statement"][0]["Effect"], "Deny");
    let prefixes: Vec<String> = bucket["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["Prefix"]["Fn::Sub"].as_str().map(str::to_owned))
        .collect();
    for kept in ["staged/", "dead-letters/"] {
        assert!(
            prefixes.iter().any(|p| p.ends_with(kept)),
            "no rule for {kept}"
        );
    }
    assert!(
        prefixes.iter().all(|p| !p.contains("log/")),
        "the commit log must never expire"
    );
    for kept in ["intents/", "pending/", "loads/"] {
        assert!(
            prefixes.iter().all(|p| !p.contains(kept)),
            "{kept}: what a batch not yet loaded needs must never expire (k2mc deletes it after the load)"
        );
    }
}

#[test]
fn a_loader_schedule_is_always_deployed_and_its_bound_reaches_the_config() {
    let t = template();
    let events = &t["Resources"]["Function"]["Properties"]["Events"];
    let load = &events["LoadTick"];
    assert_eq!(load["Type"], "ScheduleV2");
    assert_eq!(load["Properties"]["State"], "ENABLED");
    assert!(
        load.get("Condition").is_none(),
        "deployed with or without mappings"
    );
    let input: Value = serde_json::from_str(load["Properties"]["Input"].as_str().unwrap()).unwrap();
    // The function reads this event as the loader's.
    assert!(matches!(
        k2mc::trigger::parse_event(&input, chrono::Utc::now()).unwrap(),
        k2mc::trigger::Trigger::Load { .. }
    ));
    let vars = &t["Resources"]["Function"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        vars["K2MC__LOAD__INTERVAL"]["Fn::Sub"],
        "${LoadIntervalSeconds}s"
    );
    assert_eq!(t["Parameters"]["LoadIntervalSeconds"]["Default"], 60);
    let alarm = &t["Resources"]["FreshnessAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "FreshnessSeconds");
    assert_eq!(alarm["Namespace"], k2mc::metrics::NAMESPACE);
}

/// A value of the template with the given parameters: the intrinsic functions the template uses
/// (`Ref` of parameters, `Fn::If` with its conditions, `Fn::Select`, `Fn::Split`, `Fn::Join`,
/// `Fn::Sub`), with `AWS::NoValue` dropping list items and properties as CloudFormation does.
fn resolve(t: &Value, params: &serde_json::Map<String, Value>, v: &Value) -> Option<Value> {
    let text = |v: &Value| resolve(t, params, v).and_then(|v| v.as_str().map(str::to_owned));
    match v {
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(|i| resolve(t, params, i)).collect(),
        )),
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            match key.as_str() {
                "Ref" if arg == "AWS::NoValue" => None,
                "Ref" => {
                    let name = arg.as_str()?;
                    let declared = &t["Parameters"][name];
                    let value = params
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| declared["Default"].clone());
                    if declared["Type"] == "CommaDelimitedList" {
                        let list = value.as_str().unwrap_or_default();
                        return Some(json!(list.split(',').collect::<Vec<_>>()));
                    }
                    Some(value)
                }
                "Fn::If" => {
                    let branch = if condition(t, params, arg[0].as_str()?) {
                        1
                    } else {
                        2
                    };
                    resolve(t, params, &arg[branch])
                }
                "Fn::Select" => {
                    let list = resolve(t, params, &arg[1])?;
                    Some(list[arg[0].as_u64()? as usize].clone())
                }
                "Fn::Split" => Some(json!(
                    text(&arg[1])?.split(arg[0].as_str()?).collect::<Vec<_>>()
                )),
                "Fn::Join" => {
                    let items = resolve(t, params, &arg[1])?;
                    let items: Vec<&str> =
                        items.as_array()?.iter().filter_map(Value::as_str).collect();
                    Some(json!(items.join(arg[0].as_str()?)))
                }
                "Fn::Sub" => {
                    let (mut s, vars) = match arg {
                        Value::String(s) => (s.clone(), serde_json::Map::new()),
                        _ => (arg[0].as_str()?.to_owned(), arg[1].as_object()?.clone()),
                    };
                    for (name, value) in &vars {
                        s = s.replace(&format!("${{{name}}}"), &text(value)?);
                    }
                    // What is left names parameters (or pseudo parameters, kept as written).
                    if let Some(declared) = t["Parameters"].as_object() {
                        for name in declared.keys() {
                            let placeholder = format!("${{{name}}}");
                            if s.contains(&placeholder) {
                                s = s.replace(&placeholder, &text(&json!({ "Ref": name }))?);
                            }
                        }
                    }
                    Some(json!(s))
                }
                _ => Some(Value::Object(
                    map.iter()
                        .filter_map(|(k, i)| Some((k.clone(), resolve(t, params, i)?)))
                        .collect(),
                )),
            }
        }
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, i)| Some((k.clone(), resolve(t, params, i)?)))
                .collect(),
        )),
        _ => Some(v.clone()),
    }
}

/// Whether a named condition of the template holds for the given parameters.
fn condition(t: &Value, params: &serde_json::Map<String, Value>, name: &str) -> bool {
    fn eval(t: &Value, params: &serde_json::Map<String, Value>, v: &Value) -> bool {
        let (key, arg) = v.as_object().and_then(|m| m.iter().next()).unwrap();
        match key.as_str() {
            "Condition" => condition(t, params, arg.as_str().unwrap()),
            "Fn::Not" => !eval(t, params, &arg[0]),
            "Fn::And" => arg.as_array().unwrap().iter().all(|c| eval(t, params, c)),
            "Fn::Or" => arg.as_array().unwrap().iter().any(|c| eval(t, params, c)),
            "Fn::Equals" => resolve(t, params, &arg[0]) == resolve(t, params, &arg[1]),
            other => panic!("condition function {other} not evaluated here"),
        }
    }
    eval(t, params, &t["Conditions"][name])
}

#[test]
fn a_self_managed_cluster_in_a_vpc_gets_its_subnets_and_groups() {
    let t = template();
    let params = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let access = |p: &serde_json::Map<String, Value>| {
        resolve(&t, p, &t["Resources"]["SelfManagedTrigger"]["Properties"])
            .and_then(|props| props.get("SourceAccessConfigurations").cloned())
    };
    let secret = "arn:aws:secretsmanager:eu-west-1:1:secret:kafka";
    let in_vpc = params(&[
        ("SelfManagedBootstrapServers", "b1:9096,b2:9096"),
        ("SelfManagedAuth", "SASL_SCRAM_512_AUTH"),
        ("SelfManagedAuthSecretArn", secret),
        ("SubnetIds", "subnet-a,subnet-b"),
        ("SecurityGroupIds", "sg-1"),
    ]);
    assert!(condition(&t, &in_vpc, "HasSelfManaged"));
    assert_eq!(
        access(&in_vpc).unwrap(),
        json!([
            {"Type": "SASL_SCRAM_512_AUTH", "URI": secret},
            {"Type": "VPC_SUBNET", "URI": "subnet:subnet-a"},
            {"Type": "VPC_SUBNET", "URI": "subnet:subnet-b"},
            {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-1"},
        ])
    );
    // Outside a VPC, without a secret or CA: no entries at all (not an empty list).
    let open = params(&[("SelfManagedBootstrapServers", "b1:9092")]);
    assert_eq!(access(&open), None);
    // A root CA alone.
    let ca = params(&[
        ("SelfManagedBootstrapServers", "b1:9094"),
        ("SelfManagedRootCaSecretArn", secret),
    ]);
    assert_eq!(
        access(&ca).unwrap(),
        json!([{"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": secret}])
    );
}

/// Each Kafka authentication the template offers reaches the function as the config keys it
/// reads, from the same secret the event source mapping uses: SASL credentials, or the mutual
/// TLS certificate and key (never both), and a private root CA.
#[test]
fn kafka_authentication_reaches_the_function_from_the_mappings_secrets() {
    use k2mc::config::{Config, SaslMechanism};
    use k2mc::secrets::SecretRef;
    let t = template();
    let packaged = std::fs::read_to_string(repo_root().join("infra/sam/k2mc.toml")).unwrap();
    let secret = "arn:aws:secretsmanager:eu-west-1:1:secret:kafka";
    let ca = "arn:aws:secretsmanager:eu-west-1:1:secret:ca";
    let field = |id: &str, f: &str| {
        Some(SecretRef::SecretsManager {
            id: id.into(),
            field: Some(f.into()),
        })
    };
    let msk = [
        ("MskClusterArn", "arn:aws:kafka:eu-west-1:1:cluster/c/1"),
        ("MskTopic", "orders"),
        ("MskAuthSecretArn", secret),
    ];
    let own = [
        ("SelfManagedBootstrapServers", "b1:9094"),
        ("SelfManagedTopic", "orders"),
        ("SelfManagedAuthSecretArn", secret),
    ];
    let cases = vec![
        (
            [&msk[..2], &[("MskAuth", "IAM")]].concat(),
            "MskTrigger",
            Some(SaslMechanism::AwsMskIam),
            false,
            false,
        ),
        (
            msk.to_vec(),
            "MskTrigger",
            Some(SaslMechanism::ScramSha512),
            false,
            false,
        ),
        (
            [&msk[..], &[("MskAuth", "CLIENT_CERTIFICATE_TLS_AUTH")]].concat(),
            "MskTrigger",
            None,
            true,
            false,
        ),
        (
            [&own[..], &[("SelfManagedAuth", "SASL_SCRAM_256_AUTH")]].concat(),
            "SelfManagedTrigger",
            Some(SaslMechanism::ScramSha256),
            false,
            false,
        ),
        (
            [
                &own[..],
                &[
                    ("SelfManagedAuth", "CLIENT_CERTIFICATE_TLS_AUTH"),
                    ("SelfManagedRootCaSecretArn", ca),
                ],
            ]
            .concat(),
            "SelfManagedTrigger",
            None,
            true,
            true,
        ),
    ];
    for (pairs, mapping, sasl, mtls, private_ca) in cases {
        let params: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let vars = resolve(
            &t,
            &params,
            &t["Resources"]["Function"]["Properties"]["Environment"]["Variables"],
        )
        .unwrap();
        let env: Vec<(String, String)> = vars
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("K2MC__KAFKA__"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let config =
            Config::parse(&packaged, env.clone()).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
        let kafka = &config.kafka;
        assert_eq!(
            kafka.sasl.as_ref().map(|s| s.mechanism),
            sasl,
            "{pairs:?}: {env:?}"
        );
        if sasl.is_some_and(|m| m != SaslMechanism::AwsMskIam) {
            assert_eq!(
                kafka.sasl.as_ref().and_then(|s| s.password.clone()),
                field(secret, "password")
            );
        }
        let tls = kafka.tls.clone().unwrap_or_default();
        let (cert, key) = if mtls {
            (field(secret, "certificate"), field(secret, "privateKey"))
        } else {
            (None, None)
        };
        assert_eq!(
            (tls.client_certificate, tls.client_key),
            (cert, key),
            "{pairs:?}"
        );
        assert_eq!(
            tls.ca,
            if private_ca {
                field(ca, "certificate")
            } else {
                None
            },
            "{pairs:?}"
        );
        // The mapping authenticates with the same secret, as the kind the parameters name (under
        // IAM with the function's role: no secret at all).
        let access = resolve(&t, &params, &t["Resources"][mapping]["Properties"]).unwrap()["SourceAccessConfigurations"].clone();
        if sasl == Some(SaslMechanism::AwsMskIam) {
            assert_eq!(access, Value::Null, "{pairs:?}");
            assert!(
                !env.iter()
                    .any(|(k, _)| k.contains("USERNAME") || k.contains("PASSWORD"))
            );
            continue;
        }
        let kind = match (mtls, sasl) {
            (true, _) => "CLIENT_CERTIFICATE_TLS_AUTH",
            (false, Some(SaslMechanism::ScramSha256)) => "SASL_SCRAM_256_AUTH",
            _ => "SASL_SCRAM_512_AUTH",
        };
        assert!(
            access
                .as_array()
                .unwrap()
                .contains(&json!({"Type": kind, "URI": secret})),
            "{pairs:?}: {access}"
        );
        if private_ca {
            assert!(
                access
                    .as_array()
                    .unwrap()
                    .contains(&json!({"Type": "SERVER_ROOT_CA_CERTIFICATE", "URI": ca})),
                "{access}"
            );
        }
    }
}

/// Under `MskAuth = IAM` the role may connect to the one cluster, describe and read the one
/// topic, and keep the offsets of the mapping's own consumer group, which the mapping is named
/// to use; under the other modes the role has no `kafka-cluster` grant at all.
#[test]
fn msk_iam_grants_exactly_the_cluster_the_topic_and_the_mappings_group() {
    let t = template();
    let cluster = "arn:aws:kafka:eu-west-1:111122223333:cluster/orders/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab-2";
    let params = |auth: &str| -> serde_json::Map<String, Value> {
        [
            ("MskClusterArn", cluster),
            ("MskTopic", "orders"),
            ("MskAuth", auth),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
    };
    let grants = |params: &serde_json::Map<String, Value>| -> Vec<(Vec<String>, Value)> {
        let policies = resolve(
            &t,
            params,
            &t["Resources"]["FunctionRole"]["Properties"]["Policies"],
        )
        .unwrap();
        let mut out = Vec::new();
        for p in policies.as_array().unwrap() {
            for s in p["PolicyDocument"]["Statement"].as_array().unwrap() {
                let mut actions = Vec::new();
                strings(&s["Action"], &mut actions);
                if actions.iter().any(|a| a.starts_with("kafka-cluster:")) {
                    out.push((actions, s["Resource"].clone()));
                }
            }
        }
        out
    };
    let iam = params("IAM");
    let base = "arn:aws:kafka:eu-west-1:111122223333";
    let uuid = "orders/0f1e2d3c-aaaa-bbbb-cccc-1234567890ab-2";
    assert_eq!(
        grants(&iam),
        vec![
            (vec!["kafka-cluster:Connect".to_owned()], json!(cluster)),
            (
                vec![
                    "kafka-cluster:DescribeTopic".to_owned(),
                    "kafka-cluster:ReadData".to_owned()
                ],
                json!(format!("{base}:topic/{uuid}/orders"))
            ),
            (
                vec![
                    "kafka-cluster:DescribeGroup".to_owned(),
                    "kafka-cluster:AlterGroup".to_owned()
                ],
                json!(format!("{base}:group/{uuid}/k2mc-${{AWS::StackName}}"))
            ),
        ]
    );
    let mapping = resolve(&t, &iam, &t["Resources"]["MskTrigger"]["Properties"]).unwrap();
    assert_eq!(
        mapping["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"],
        json!("k2mc-${AWS::StackName}")
    );
    for other in ["SASL_SCRAM_512_AUTH", "CLIENT_CERTIFICATE_TLS_AUTH"] {
        let p = params(other);
        assert!(grants(&p).is_empty(), "{other}");
        let mapping = resolve(&t, &p, &t["Resources"]["MskTrigger"]["Properties"]).unwrap();
        assert_eq!(
            mapping["AmazonManagedKafkaEventSourceConfig"],
            Value::Null,
            "{other}"
        );
    }
}
