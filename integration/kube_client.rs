//! A kube-rs client, as controllers use it, works against the server unchanged.

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use crate::harness::TestServer;

fn client(s: &TestServer) -> kube::Client {
    // kube links a second rustls crypto provider; choose one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(s.base_url().parse().unwrap());
    config.accept_invalid_certs = true;
    kube::Client::try_from(config).unwrap()
}

fn agents(c: kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ark.mckinsey.com", "v1alpha1", "Agent"),
        "agents",
    );
    Api::namespaced_with(c, "team-a", &ar)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_creates_lists_patches_status_and_deletes() {
    let s = TestServer::start().await;
    let api = agents(client(&s));
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "k", "labels": {"team": "a"}}, "spec": {"prompt": "from kube-rs"}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let listed = api
        .list(&ListParams::default().labels("team=a"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    let pp = PatchParams::default();
    let patched = api
        .patch(
            "k",
            &pp,
            &Patch::Merge(json!({"spec": {"prompt": "changed"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    let status = api
        .patch_status(
            "k",
            &pp,
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Checked", "message": "m"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["conditions"][0]["status"], "True");
    assert_eq!(status.metadata.generation, Some(2));

    // A typed error a controller can branch on.
    match api.get("missing").await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 404);
            assert_eq!(e.reason, "NotFound");
        }
        other => panic!("expected a NotFound Status, got {other:?}"),
    }
    let stale = created;
    let mut replaced = stale.clone();
    replaced.data["spec"]["prompt"] = json!("stale write");
    match api.replace("k", &PostParams::default(), &replaced).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "Conflict")),
        other => panic!("expected a Conflict, got {other:?}"),
    }
    api.delete("k", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("k").await.unwrap().is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_server_side_apply_owns_fields_and_a_repeated_apply_makes_no_event() {
    use futures_util::{StreamExt, TryStreamExt};
    use kube::api::WatchParams;
    use kube::core::WatchEvent;

    let s = TestServer::start().await;
    let api = agents(client(&s));
    let config = json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "ssa"}, "spec": {"prompt": "v1"}
    });
    let pp = PatchParams::apply("my-controller");
    let created = api.patch("ssa", &pp, &Patch::Apply(&config)).await.unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("my-controller"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let rv = created.metadata.resource_version.clone().unwrap();

    let mut events = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    // Applying the same configuration again: same resourceVersion, no event.
    let again = api.patch("ssa", &pp, &Patch::Apply(&config)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    assert_eq!(
        again.metadata.managed_fields,
        created.metadata.managed_fields
    );

    // Another manager's conflicting apply fails as kube's does, and succeeds forced.
    let other = json!({
        "apiVersion": "ark.mckinsey.com/v1alpha1", "kind": "Agent",
        "metadata": {"name": "ssa"}, "spec": {"prompt": "v2"}
    });
    let err = api
        .patch("ssa", &PatchParams::apply("other"), &Patch::Apply(&other))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(
                s.message,
                r#"Apply failed with 1 conflict: conflict with "my-controller": .spec.prompt"#
            );
        }
        other => panic!("{other:?}"),
    }
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["prompt"], "v2");

    // The first event the watch sees is the forced apply, not the no-op.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next())
        .await
        .expect("an event")
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Modified(o) => {
            assert_eq!(o.data["spec"]["prompt"], "v2");
            assert_eq!(
                o.metadata.resource_version,
                forced.metadata.resource_version
            );
        }
        other => panic!("{other:?}"),
    }
    s.stop().await;
}
