#!/usr/bin/env bash
# Optional: Entra ID user changes as Event Grid events (Microsoft Graph partner topic), so a
# change starts a delta discovery within seconds instead of at the next DISCOVERY_DELTA_SCHEDULE.
#
#   scripts/graph-events-setup.sh create   # authorize Graph, subscribe to /users, activate topic
#   scripts/graph-events-setup.sh renew    # Graph user subscriptions last at most 29 days
#
# `create` sets GRAPH_PARTNER_TOPIC_NAME in the azd environment and re-runs the postdeploy hook,
# which subscribes `discovery_events` to the partner topic (infra/events.bicep). The Graph
# subscription is owned by whoever runs this (delegated, through the Azure CLI): schedule `renew`.
set -euo pipefail
GRAPH=https://graph.microsoft.com/v1.0
eval "$(azd env get-values | sed -n 's/^\([A-Z_][A-Z0-9_]*\)=/export \1=/p')"
RG=${AZURE_RESOURCE_GROUP:?run azd provision first}
LOCATION=${AZURE_LOCATION:?}
SUBSCRIPTION=$(az account show --query id --output tsv)
TOPIC=${GRAPH_PARTNER_TOPIC_NAME:-graph-users-${AZURE_ENV_NAME:?}}
expiry() { python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc)+d.timedelta(days=28)).strftime("%Y-%m-%dT%H:%M:%SZ"))'; }

case "${1:-}" in
  create)
    az eventgrid partner configuration authorize --resource-group "$RG" \
      --partner-name MicrosoftGraphAPI --authorization-expiration-date "$(expiry)" --output none
    url="EventGrid:?azuresubscriptionid=$SUBSCRIPTION&resourcegroup=$RG&partnertopic=$TOPIC&location=$LOCATION"
    id=$(az rest --method POST --url "$GRAPH/subscriptions" --headers Content-Type=application/json \
      --body "{\"changeType\": \"updated,deleted\", \"resource\": \"users\",
               \"notificationUrl\": \"$url\", \"lifecycleNotificationUrl\": \"$url\",
               \"expirationDateTime\": \"$(expiry)\",
               \"clientState\": \"$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')\"}" \
      --query id --output tsv)
    az eventgrid partner topic activate --resource-group "$RG" --name "$TOPIC" --output none
    azd env set GRAPH_PARTNER_TOPIC_NAME "$TOPIC"
    azd env set GRAPH_SUBSCRIPTION_ID "$id"
    azd hooks run postdeploy
    ;;
  renew)
    az rest --method PATCH --url "$GRAPH/subscriptions/${GRAPH_SUBSCRIPTION_ID:?run create first}" \
      --headers Content-Type=application/json --body "{\"expirationDateTime\": \"$(expiry)\"}" --output none
    echo "Graph subscription $GRAPH_SUBSCRIPTION_ID renewed until $(expiry)"
    ;;
  *) echo "usage: $0 create|renew" >&2; exit 2 ;;
esac
