// ConfigMgr Cloud Bootstrap: everything `azd up` provisions.
// - modules/app.bicep: identity, storage (tables, queues, deployment container), Key Vault and the
//   bundle signing key, monitoring, Event Grid topic, the Flex Consumption function app, roles.
// - modules/entra.bicep: server and client app registrations, admin consent, Graph User.Read.All
//   and Device.Read.All for the managed identity (Microsoft Graph Bicep extension). Skip it with
//   MANAGE_ENTRA_APPS=false after running scripts/entra-setup.sh.
// - events.bicep (not here): Event Grid subscriptions to `discovery_events`, deployed by the
//   postdeploy hook because an AzureFunction endpoint must exist before it can be subscribed.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name: names and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region (must offer Flex Consumption).')
param location string

@description('Object id of whoever runs azd (operators): gets data roles for the Operations runbook. Empty to skip.')
param deployerPrincipalId string = ''

@description('Create the Entra app registrations with the Microsoft Graph Bicep extension. False: pass the ids made by scripts/entra-setup.sh.')
param manageEntraApps bool = true

@description('AAD_SERVER_APP_ID when manageEntraApps is false.')
param serverAppId string = ''

@description('AAD_CLIENT_APP_ID when manageEntraApps is false.')
param clientAppId string = ''

@description('AAD_RESOURCE_URI: the server app App ID URI. Default api://<tenant id>/<env>-cmbootstrap.')
param resourceUri string = ''

@minLength(3)
@description('AAD_TENANT_NAME, e.g. contoso.onmicrosoft.com (AADTENANTNAME).')
param tenantName string

@description('Comma-separated object ids of users or groups that get the ADMIN_ROLE app role.')
param adminPrincipalIds string = ''

@description('Redirect URIs of the native client app used by devices.')
param clientRedirectUris array = [
  'https://login.microsoftonline.com/common/oauth2/nativeclient'
  'http://localhost'
]

@minLength(4)
@description('CCM_HOSTNAME: CMG host and path, no scheme.')
param ccmHostname string

@minLength(3)
@maxLength(3)
@description('SMS_SITE_CODE: three-character site code.')
param siteCode string

@description('SMS_MP: lookup management point (empty: not emitted).')
param managementPoint string = ''

@description('CCMSETUP_SOURCE: /Source: folder on the device (empty: not emitted).')
param ccmsetupSource string = ''

@description('CCMSETUP_NO_CRL_CHECK: emit /NoCrlCheck.')
param noCrlCheck bool = false

@minValue(1)
@maxValue(1440)
@description('BUNDLE_TTL_MINUTES: bundle lifetime.')
param bundleTtlMinutes int = 30

@description('BUNDLE_SIGNING_KEY_ID pinned to a key version during a rotation (README). Empty: the newest version of the vault key.')
param signingKeyId string = ''

@description('BUNDLE_SIGNING_NEXT_KEY_ID: second key published in /api/jwks during a rotation. Empty outside one.')
param signingNextKeyId string = ''

@description('DISCOVERY_FULL_SCHEDULE (NCRONTAB, six fields).')
param discoveryFullSchedule string = '0 0 2 * * 0'

@description('DISCOVERY_DELTA_SCHEDULE (NCRONTAB, six fields).')
param discoveryDeltaSchedule string = '0 */5 * * * *'

@minValue(5)
@maxValue(3600)
@description('DISCOVERY_TIME_BUDGET_SECONDS: checkpoint and continue after this long.')
param discoveryTimeBudgetSeconds int = 240

@minValue(5)
@maxValue(3600)
@description('DISCOVERY_LEASE_SECONDS: lease of a discovery run.')
param discoveryLeaseSeconds int = 120

@minLength(1)
@description('ADMIN_ROLE: app role required on admin endpoints.')
param adminRole string = 'Bootstrap.Admin'

@description('AAD_AUTHORITY_HOST (sovereign clouds).')
param authorityHost string = 'https://login.microsoftonline.com'

@description('GRAPH_BASE_URL (sovereign clouds).')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int = 40

var tags = {
  'azd-env-name': environmentName
  workload: 'configmgr-cloud-bootstrap'
}
var appName = '${environmentName}-cmbootstrap'
var effectiveResourceUri = empty(resourceUri) ? 'api://${tenant().tenantId}/${appName}' : resourceUri

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

// The managed identity exists before the Entra module needs its principal id.
module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${appName}'
    location: location
    tags: tags
  }
}

module entra 'modules/entra.bicep' = if (manageEntraApps) {
  name: 'entra'
  scope: rg
  params: {
    appName: appName
    resourceUri: effectiveResourceUri
    adminRole: adminRole
    adminPrincipalIds: adminPrincipalIds
    clientRedirectUris: clientRedirectUris
    identityPrincipalId: identity.outputs.principalId
  }
}

module app 'modules/app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: toLower(uniqueString(subscription().id, rg.id, environmentName))
    identityName: identity.outputs.name
    deployerPrincipalId: deployerPrincipalId
    maximumInstanceCount: maximumInstanceCount
    signingKeyId: signingKeyId
    appSettings: {
      AZURE_FUNCTIONS_ENVIRONMENT: 'Production'
      AAD_TENANT_ID: tenant().tenantId
      AAD_TENANT_NAME: tenantName
      AAD_SERVER_APP_ID: manageEntraApps ? entra.outputs.serverAppId : serverAppId
      AAD_RESOURCE_URI: effectiveResourceUri
      AAD_CLIENT_APP_ID: manageEntraApps ? entra.outputs.clientAppId : clientAppId
      AAD_AUTHORITY_HOST: authorityHost
      GRAPH_BASE_URL: graphBaseUrl
      CCM_HOSTNAME: ccmHostname
      SMS_SITE_CODE: siteCode
      SMS_MP: managementPoint
      CCMSETUP_SOURCE: ccmsetupSource
      CCMSETUP_NO_CRL_CHECK: noCrlCheck ? 'true' : 'false'
      BUNDLE_TTL_MINUTES: string(bundleTtlMinutes)
      BUNDLE_SIGNING_NEXT_KEY_ID: signingNextKeyId
      DISCOVERY_FULL_SCHEDULE: discoveryFullSchedule
      DISCOVERY_DELTA_SCHEDULE: discoveryDeltaSchedule
      DISCOVERY_TIME_BUDGET_SECONDS: string(discoveryTimeBudgetSeconds)
      DISCOVERY_LEASE_SECONDS: string(discoveryLeaseSeconds)
      ADMIN_ROLE: adminRole
    }
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output FUNCTION_APP_URL string = app.outputs.functionAppUrl
output JWKS_URL string = '${app.outputs.functionAppUrl}/api/jwks'
output BUNDLE_URL string = '${app.outputs.functionAppUrl}/api/bundle'
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
output KEY_VAULT_NAME string = app.outputs.keyVaultName
output SIGNING_KEY_LATEST_ID string = app.outputs.signingKeyLatestId
output DISCOVERY_TOPIC_NAME string = app.outputs.discoveryTopicName
output DISCOVERY_TOPIC_ENDPOINT string = app.outputs.discoveryTopicEndpoint
output AAD_TENANT_ID string = tenant().tenantId
output AAD_SERVER_APP_ID string = manageEntraApps ? entra.outputs.serverAppId : serverAppId
output AAD_CLIENT_APP_ID string = manageEntraApps ? entra.outputs.clientAppId : clientAppId
output AAD_RESOURCE_URI string = effectiveResourceUri
