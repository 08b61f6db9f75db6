// Azure resources of the app, identity-only: no connection string, shared key or local auth anywhere.
param location string
param tags object
@description('Short unique suffix for globally unique names.')
param resourceToken string
param identityName string
@description('Operator who ran azd: data roles for the Operations runbook. Empty to skip.')
param deployerPrincipalId string
param maximumInstanceCount int
@description('BUNDLE_SIGNING_KEY_ID, versioned; empty only on the first provision (then the version created now).')
param signingKeyId string
@description('Epoch seconds of the first key version expiry; later versions get theirs from the rotation policy.')
param signingKeyExpiry int = dateTimeToEpoch(dateTimeAdd(utcNow(), 'P13M'))
@description('The settings of docs/contract.md that do not depend on resources created here.')
param appSettings object

var deploymentContainerName = 'app-package-${resourceToken}'
var deadLetterContainerName = 'eventgrid-deadletter'
var functionAppName = 'func-cmboot-${resourceToken}'
// Every table and queue of docs/contract.md (shared/names.py), created here so no first request pays for it.
var tableNames = [
  'AadUsers'
  'DiscoveryState'
  'DiscoveryRuns'
  'DeviceStatus'
  'DeviceStatusHistory'
  'BundleIssuance'
  'BlockedDevices'
  'RejectedReports'
  'DeviceProofs'
  'AadGroups'
  'AadGroupMembers'
  'GraphSubscriptions'
  'InstallProfiles'
  'ResolvedProfiles'
  'DeviceOverview'
]
var queueNames = [
  'discovery-continue'
  'discovery-continue-poison'
  'device-status'
  'device-status-poison'
]
// Built-in role definition ids (stable across tenants).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

// ---------------------------------------------------------------- monitoring (Entra auth only)

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-cmboot-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-cmboot-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- storage (identity-based only)

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without a VNet reaches storage over its public endpoint; shared keys are off and every caller needs an Entra role.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35; put the app in a VNet with private endpoints to close it.
  // checkov:skip=CKV_AZURE_206: tables are a rebuildable projection of Entra ID plus device reports; LRS is the cost trade-off, use GRS/ZRS by editing the sku.
  // checkov:skip=CKV_AZURE_43: checkov cannot evaluate the interpolation; 'stcmboot' + uniqueString() is 21 lowercase alphanumerics.
  name: 'stcmboot${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

// The Functions host (AzureWebJobsStorage__*: leases, timers, deployment package) needs blob owner.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queue triggers, queue outputs and the discovery-continue checkpoints.
resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Operators: block devices (tables) and replay poison messages (queues) with --auth-mode login.
resource operatorTables 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: deployerPrincipalId
  }
}

resource operatorQueues 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: deployerPrincipalId
  }
}

// ---------------------------------------------------------------- Key Vault and the signing key

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Flex Consumption without a VNet signs over the public endpoint; RBAC limits the identity to sign with one key.
  // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109.
  name: 'kv-cmboot-${take(resourceToken, 13)}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The bundle signing key never leaves the vault: the app calls sign and publishes the public part
// in /api/jwks. The app is pinned to one version (keyUriWithVersion), so every instance signs with
// the key JWKS publishes. Key Vault makes the next version 30 days before expiry and notifies
// (Event Grid KeyNearExpiry); the operator then rolls it in with BUNDLE_SIGNING_NEXT_KEY_ID (README).
resource signingKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  // checkov:skip=CKV_AZURE_112: an HSM-backed key needs the Premium vault sku; set kty RSA-HSM and sku premium to get it.
  parent: keyVault
  name: 'bundle-signing'
  tags: tags
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: [
      'sign'
      'verify'
    ]
    attributes: {
      enabled: true
      exp: signingKeyExpiry
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P13M'
      }
      lifetimeActions: [
        {
          trigger: {
            timeBeforeExpiry: 'P30D'
          }
          action: {
            type: 'rotate'
          }
        }
        {
          trigger: {
            timeBeforeExpiry: 'P30D'
          }
          action: {
            type: 'notify'
          }
        }
      ]
    }
  }
}

// Sign only, and only with this key: the assignment is scoped to the key, not the vault.
resource signingKeyUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(signingKey.id, identity.id, roles.keyVaultCryptoUser)
  scope: signingKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Operators rotate the key on demand (README: Deploy, rotating the signing key).
resource operatorKeyRotation 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(signingKey.id, deployerPrincipalId, roles.keyVaultCryptoOfficer)
  scope: signingKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultCryptoOfficer)
    principalId: deployerPrincipalId
  }
}

// ---------------------------------------------------------------- Event Grid: forced discovery

// Admins publish CMBootstrap.DiscoveryRequested here (Entra auth only); events.bicep subscribes
// discovery_events to it after the code is deployed.
resource discoveryTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193: admins publish from outside any VNet; local (key) auth is disabled, so publishing needs the EventGrid Data Sender role.
  name: 'evgt-cmboot-${resourceToken}'
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

// Undeliverable events are kept, not lost: the topic dead-letters into this container.
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, discoveryTopic.id, roles.storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: discoveryTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(discoveryTopic.id, deployerPrincipalId, roles.eventGridDataSender)
  scope: discoveryTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: deployerPrincipalId
  }
}

// ---------------------------------------------------------------- Flex Consumption function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions; set zoneRedundant: true where the region offers it.
  name: 'plan-cmboot-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// The signing version is pinned explicitly: keyUriWithVersion only on the first provision (the
// vault's only version); afterwards main.bicep's BUNDLE_SIGNING_KEY_ID output comes back as
// signingKeyId, so a version the rotation policy creates never signs until an operator rotates.
var effectiveSigningKeyId = empty(signingKeyId) ? signingKey.properties.keyUriWithVersion : signingKeyId

// Settings derived from the resources above; the contract's settings come in through appSettings.
var resourceSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AZURE_CLIENT_ID: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
  BUNDLE_SIGNING_KEY_ID: effectiveSigningKeyId
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: client certificates are what this app replaces: devices present Entra tokens instead.
  // checkov:skip=CKV_AZURE_222: public on purpose: internet-based ConfigMgr clients call it.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per trigger; instance minimums are alwaysReady, a cost choice.
  // checkov:skip=CKV_AZURE_213: Flex Consumption does not support the App Service health check; /api/health serves monitors instead.
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(union(appSettings, resourceSettings)): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    blobOwner
    queueContributor
    tableContributor
    metricsPublisher
    signingKeyUser
    tables
    queues
    deploymentContainer
  ]
}

// No basic-auth publishing: azd deploys with Entra credentials.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output keyVaultName string = keyVault.name
output signingKeyLatestId string = signingKey.properties.keyUriWithVersion
output signingKeyId string = effectiveSigningKeyId
output discoveryTopicName string = discoveryTopic.name
output discoveryTopicEndpoint string = discoveryTopic.properties.endpoint
